"""Launching the supervisor (pid1.py, PID 1 of a bubblewrap sandbox or the fallback's host process) and
cleaning up after it: uid slots for concurrent fallback launches, the long-lived spawner thread, the support
files (the supervisor compiled by the sandbox's interpreter)."""

from __future__ import annotations

import fcntl
import marshal
import os
import queue
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from srpo_mcore.rewards.sandbox.host import is_root, reachable_by
from srpo_mcore.rewards.sandbox.records import STDERR_KEEP_BYTES, SandboxUnavailable

SUPERVISOR_SOURCE = (Path(__file__).with_name("pid1.py")).read_text(encoding="utf-8")


class UidSlots:
    """Distinct uids for concurrent fallback launches, so that RLIMIT_NPROC (per uid) and the kill-by-uid
    clean-up never touch another launch - of this process or of another trainer rank on the machine: a uid
    is held by an exclusive ``flock`` on ``<tmp>/srpo-sandbox-uids/<uid>``, released when the launch ends or
    its process dies."""

    def __init__(self, base: int, count: int = 256):
        self.base, self.count = base, count
        self._dir = os.path.join(tempfile.gettempdir(), "srpo-sandbox-uids")
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def acquire(self) -> int:
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        while True:
            for uid in range(self.base, self.base + self.count):
                with self._lock:
                    if uid in self._held:
                        continue
                fd = os.open(os.path.join(self._dir, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                with self._lock:
                    self._held[uid] = fd
                return uid
            time.sleep(0.01)  # all taken: wait for a launch to end

    def release(self, uid: int) -> None:
        with self._lock:
            fd = self._held.pop(uid)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class _Spawner:
    """Starts sandboxes from one long-lived thread: ``--die-with-parent`` (PR_SET_PDEATHSIG) fires when the
    *thread* that forked bwrap exits, so a sandbox kept warm must not be started by a short-lived worker."""

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-spawner", daemon=True)
                self._thread.start()
        done: queue.Queue = queue.Queue(maxsize=1)
        self._jobs.put((cmd, kwargs, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value

    def _run(self) -> None:
        while True:
            cmd, kwargs, done = self._jobs.get()
            try:
                done.put((True, subprocess.Popen(cmd, **kwargs)))
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                done.put((False, e))


_SPAWNER = _Spawner()


class Supervisor:
    """One supervisor process (a bubblewrap sandbox, or the fallback's host process) serving launches over
    length-prefixed ``marshal`` frames on its stdin/stdout."""

    def __init__(self, cmd: list[str], *, pass_fds: tuple = (), **kwargs):
        self.proc = _SPAWNER.popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   close_fds=True, start_new_session=True, pass_fds=pass_fds, **kwargs)
        self.launches = 0
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            os.set_blocking(f.fileno(), False)
        self.stderr = bytearray()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, spec: dict, deadline: float, cap: int) -> tuple[dict | None, str]:
        """Send one launch; return (report, "") or (None, what went wrong)."""
        self.launches += 1
        payload = marshal.dumps(spec, 4)
        view = memoryview(len(payload).to_bytes(8, "little") + payload)
        reply = bytearray()
        need: int | None = None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdin, selectors.EVENT_WRITE)
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        try:
            while need is None or len(reply) < need:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, "host deadline passed"
                for key, _ in sel.select(min(left, 1.0)):
                    if key.fileobj is self.proc.stdin:
                        try:
                            view = view[os.write(key.fd, view[:1 << 16]):]
                        except BrokenPipeError:
                            return None, self._died()
                        if not view:
                            sel.unregister(self.proc.stdin)
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        return None, self._died()
                    if key.fileobj is self.proc.stderr:
                        self.stderr = (self.stderr + chunk)[-STDERR_KEEP_BYTES:]
                        continue
                    reply += chunk
                    if need is None and len(reply) >= 8:
                        need = 8 + int.from_bytes(reply[:8], "little")
                        if need > cap:
                            return None, f"supervisor report of {need} bytes is over the {cap}-byte cap"
        finally:
            sel.close()
        try:
            return marshal.loads(bytes(reply[8:need])), ""
        except (EOFError, ValueError, TypeError) as e:
            return None, f"unreadable supervisor report: {e}"

    def _died(self) -> str:
        try:
            self.proc.wait(timeout=2.0)
            self.stderr += self.proc.stderr.read() or b""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            pass
        why = self.stderr.decode(errors="replace").strip()[-2000:]
        return f"sandbox exited ({self.proc.returncode}): {why}" if why else f"sandbox exited ({self.proc.returncode})"

    def close(self, *, kill: bool = False) -> None:
        """End the supervisor: EOF makes it kill everything and exit; ``kill`` (or no exit within 5 s) takes
        it down with SIGKILL (bwrap's ``--die-with-parent`` then kills the whole sandbox)."""
        if not kill and self.alive():
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def remove_files_of(uid: int) -> None:
    """Remove what a fallback launch's uid left in the world-writable directories (top-level entries)."""
    for top in _WORLD_WRITABLE:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def kill_uid(uid: int) -> None:
    """Kill every process of a dedicated fallback uid (only used while this launch owns that uid)."""
    for _ in range(100):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except OSError:
                pass
        if not found:
            return
        time.sleep(0.01)


def support_files(python: str, uid: int) -> str:
    """A directory (readable by the sandbox uid) holding the supervisor compiled by the sandbox's interpreter,
    so no launch pays for compiling it; removed at exit."""
    candidates = [tempfile.gettempdir(), "/tmp", "/dev/shm"]
    for base in candidates:
        if not os.path.isdir(base) or (is_root() and not reachable_by(base, uid, uid, need=1)):
            continue
        path = tempfile.mkdtemp(prefix="srpo-sandbox-", dir=base)
        os.chmod(path, 0o755)
        src = os.path.join(path, "supervisor.py")
        Path(src).write_text(SUPERVISOR_SOURCE, encoding="utf-8")
        compile_cmd = [python, "-I", "-S", "-c",
                       "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
                       src, os.path.join(path, "supervisor.pyc")]
        subprocess.run(compile_cmd, check=True, capture_output=True, timeout=120)
        os.chmod(os.path.join(path, "supervisor.pyc"), 0o644)
        return path
    raise SandboxUnavailable(f"no temporary directory reachable by uid {uid} among {candidates}")

