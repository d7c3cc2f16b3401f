"""Run untrusted Python code: a bubblewrap sandbox with rlimits, an unprivileged uid and a seccomp filter.

Model-written code is untrusted input on the training cluster; this module is the project's boundary for it.
One *launch* runs one program against any number of tests::

    sandbox = Sandbox(SandboxLimits(cpu_seconds=2))
    result = sandbox.run("print(input()[::-1])", stdin="abc")          # one program, like the CLI
    outcomes = sandbox.run_tests(source, [HarnessTest("stdin", "1 2\\n"), ...])  # a code reward's tests

Layers (``backend="bwrap"``, chosen when user namespaces work):

* bubblewrap with ``--unshare-all`` (user, PID, network, IPC, UTS, cgroup and mount namespaces: no network
  at all, only loopback, which is down), read-only binds of ``/usr`` and the interpreter, a size-capped tmpfs
  as ``/tmp`` (the work dir) and ``/dev/shm``, a read-only root and ``/dev``, no ``/etc``, ``/home`` or
  project files, a cleared environment, ``--die-with-parent``;
* started as an unprivileged uid (``sandbox_uid``, default 65534) when the host runs as root: setpriv's
  effect, done by ``subprocess`` (``user=``, ``group=``, ``extra_groups=[]``) before bwrap starts, so
  ``RLIMIT_NPROC`` is enforced and an escape lands as nobody;
* the supervisor (``_sandbox_init.py``, ``python -I -S``) is PID 1 of the sandbox: processes inside cannot
  signal it, it is not dumpable, it is a child subreaper, and it kills (``kill(-1)``) and reaps everything a
  test leaves behind; each test runs in a forked child with rlimits (CPU seconds, address space, processes,
  file size, open files, no core dumps), ``no_new_privs`` and a seccomp filter (no ptrace, mount, unshare,
  bpf, io_uring, non-Unix sockets, SysV IPC, ...); every 50 ms the private memory of all the sandbox's
  processes together is checked against the same memory limit (processes x RLIMIT_AS is no bound);
* limits are judged by CPU time (RLIMIT_CPU); the wall-clock deadline catches sleeping programs, and a
  program still computing at its wall deadline (slowed by a loaded machine) gets up to 3x longer, so load
  does not fail correct programs; stdout and stderr are read up to a cap and the program is killed past it;
* a sandbox stays warm for up to ``reuse`` launches (bubblewrap's start-up then costs nothing per program):
  between launches every process is dead and ``/tmp`` and ``/dev/shm`` are empty, and SysV/POSIX-mqueue
  IPC, which would outlive processes, is denied.

``backend="rlimits"`` (the fallback where bubblewrap cannot create namespaces, e.g. in a container whose
seccomp profile forbids ``unshare``): the same supervisor on the host, children drop to a per-launch uid
(when root), the same rlimits, and a stricter seccomp filter (also no ``kill``). There is no filesystem or
network namespace: this is logged as an error at start-up and reported in every result.

Run ``python -m srpo_mcore.rewards.sandbox PROGRAM.py [--stdin FILE] [--timeout S] [--memory-mb N]`` to run
one program; it prints one JSON line (status, exit_code, stdout, stderr, cpu_seconds, wall_seconds).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import logging
import marshal
import os
import queue
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

STATUSES = ("ok", "wrong_answer", "runtime_error", "timeout", "memory_limit", "output_limit", "sandbox_error",
            "not_run")
BACKENDS = ("auto", "bwrap", "rlimits")
SUPERVISOR_SOURCE = (Path(__file__).with_name("_sandbox_init.py")).read_text(encoding="utf-8")
STDERR_KEEP_BYTES = 64 << 10
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-test limits (``cpu_seconds`` .. ``file_size_mb``) and per-launch ones (``total_wall_seconds``)."""

    cpu_seconds: float = 4.0
    wall_seconds: float = 10.0
    total_wall_seconds: float = 60.0
    memory_mb: int = 1024
    output_bytes: int = 1 << 20
    max_processes: int = 32
    file_size_mb: int = 16
    tmpfs_mb: int = 64
    wall_stretch: float = 3.0  # a program still computing at its wall limit may run this many times longer

    def to_spec(self) -> dict:
        return {"cpu_seconds": float(self.cpu_seconds), "wall_seconds": float(self.wall_seconds),
                "total_wall_seconds": float(self.total_wall_seconds), "memory_mb": int(self.memory_mb),
                "output_bytes": int(self.output_bytes), "max_processes": int(self.max_processes),
                "file_size_mb": int(self.file_size_mb), "wall_stretch": max(1.0, float(self.wall_stretch))}


@dataclass(frozen=True)
class HarnessTest:
    """One test run in the sandbox. ``kind``: ``stdin`` (``input`` is fed on standard input), ``functional``
    (``input`` holds one JSON argument per line; ``entry_point`` is called) or ``check`` (``input`` is Python
    defining ``check(candidate)``; ``check(<entry_point>)`` is called, or the source calls it itself)."""

    kind: str
    input: str = ""
    entry_point: str | None = None
    cpu_seconds: float | None = None

    def to_spec(self, limits: SandboxLimits) -> dict:
        spec = {"kind": self.kind, "input": self.input or "", "entry_point": self.entry_point}
        if self.cpu_seconds:
            spec["cpu_seconds"] = float(self.cpu_seconds)
            spec["wall_seconds"] = max(limits.wall_seconds, 2 * float(self.cpu_seconds) + 1)
        return spec


@dataclass
class TestOutcome:
    """What happened to one test; ``value_json`` is a functional test's return value (JSON, from the
    sandbox: parse it as untrusted data)."""

    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_rss_mb: float = 0.0
    value_json: str | None = None
    error: str = ""


@dataclass
class SandboxResult:
    """One program run (the CLI's JSON line)."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    cpu_seconds: float
    wall_seconds: float
    backend: str
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


# ----------------------------------------------------------------------------------------------------------
# Host facts, probed once per process.
# ----------------------------------------------------------------------------------------------------------

def _is_root() -> bool:
    return os.geteuid() == 0


def _reachable_by(path: str, uid: int, gid: int, *, need: int) -> bool:
    """Whether ``uid``/``gid`` (not root) can traverse to ``path`` and access it with ``need`` (rwx bits)."""
    p = Path(path)
    checks = [(a, 1) for a in reversed(p.parents)] + [(p, need)]
    for entry, bits in checks:
        try:
            st = os.stat(entry)
        except OSError:
            return False
        if st.st_uid == uid:
            mode = (st.st_mode >> 6) & 7
        elif st.st_gid == gid:
            mode = (st.st_mode >> 3) & 7
        else:
            mode = st.st_mode & 7
        if mode & bits != bits:
            return False
    return True


def _prefix_of(python: str) -> str:
    return str(Path(python).resolve().parent.parent)


def choose_python(configured: str = "", uid: int | None = None) -> str:
    """The interpreter for sandboxed programs: ``configured``, else this one if the sandbox uid can read it,
    else the system ``python3``. Programs see only its standard library (``-I -S``)."""
    if configured:
        path = shutil.which(configured) or configured
        if not os.path.exists(path):
            raise SandboxUnavailable(f"sandbox python {configured!r} does not exist")
        return str(Path(path).resolve())
    candidates = [str(Path(sys.executable).resolve())]
    for name in ("/usr/bin/python3", shutil.which("python3")):
        if name and os.path.exists(name):
            candidates.append(str(Path(name).resolve()))
    if uid is None or not _is_root():
        return candidates[0]
    for cand in candidates:
        lib = Path(_prefix_of(cand)) / "lib"
        if _reachable_by(cand, uid, uid, need=5) and _reachable_by(str(lib), uid, uid, need=5):
            if cand != candidates[0]:
                logger.info("sandbox: uid %d cannot read %s; sandboxed programs run on %s", uid, candidates[0],
                            cand)
            return cand
    raise SandboxUnavailable(f"no Python interpreter readable by uid {uid}; set rewards.sandbox_python")


# CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP
_NS_FLAGS = (0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x02000000)
_DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog", "open_by_handle_at", "name_to_handle_at",
    "fanotify_init", "quotactl", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "mount_setattr", "pidfd_getfd", "personality", "vhangup", "settimeofday", "clock_settime", "adjtimex",
    # SysV IPC and POSIX message queues outlive the processes that create them.
    "shmget", "shmat", "semget", "msgget", "mq_open")
_SIGNAL_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal")
_BPF_CACHE: dict[bool, bytes | None] = {}
_BPF_LOCK = threading.Lock()


def seccomp_bpf(deny_signals: bool) -> bytes | None:
    """The children's seccomp program (classic BPF, via libseccomp); ``None`` if pyseccomp is missing.

    Denied with EPERM: debugging other processes, namespaces and mounts, kernel-module/keyring/bpf/io_uring
    interfaces, clock changes, sockets other than AF_UNIX; ``clone3`` says ENOSYS so libc falls back to
    ``clone``, whose namespace flags are denied. ``deny_signals`` (the fallback) also denies sending signals.
    """
    with _BPF_LOCK:
        if deny_signals in _BPF_CACHE:
            return _BPF_CACHE[deny_signals]
        try:
            import pyseccomp as sc
        except (ImportError, OSError) as e:
            logger.warning("sandbox: pyseccomp unavailable (%s); children run without a seccomp filter", e)
            _BPF_CACHE[deny_signals] = None
            return None
        filt = sc.SyscallFilter(sc.ALLOW)
        eperm = sc.ERRNO(errno.EPERM)
        for name in _DENIED_SYSCALLS + (_SIGNAL_SYSCALLS if deny_signals else ()):
            try:
                filt.add_rule(eperm, name)
            except (OSError, ValueError):
                pass  # not a syscall on this architecture
        filt.add_rule(eperm, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
        for flag in _NS_FLAGS:
            filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        with tempfile.TemporaryFile() as f:
            filt.export_bpf(f)
            f.seek(0)
            bpf = f.read()
        _BPF_CACHE[deny_signals] = bpf
        return bpf


def _bwrap_command(python: str, tmpfs_mb: int, supervisor: str | None = None) -> list[str]:
    bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox",
           "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
           "--ro-bind", "/usr", "/usr"]
    for link in _ROOT_LINKS:
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    prefix = _prefix_of(python)
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        cmd += ["--ro-bind", prefix, prefix]
    size = str(int(tmpfs_mb) << 20)
    if supervisor is not None:
        cmd += ["--ro-bind", supervisor, "/.supervisor.pyc"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp",
            "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", "/tmp"]
    return cmd


def _drop_kwargs(uid: int) -> dict:
    """``subprocess`` arguments that start the child as ``uid`` (what ``setpriv --reuid --regid
    --clear-groups`` does), when we are root; nothing otherwise."""
    if not _is_root():
        return {}
    return {"user": uid, "group": uid, "extra_groups": []}


_PROBES: dict[tuple, tuple[bool, str]] = {}
_PROBE_LOCK = threading.Lock()


def probe_bwrap(python: str, uid: int) -> tuple[bool, str]:
    """Whether bubblewrap can create its namespaces here (as the sandbox uid); cached per process."""
    key = (python, uid)
    with _PROBE_LOCK:
        if key not in _PROBES:
            if not (shutil.which("bwrap") or os.path.exists("/usr/bin/bwrap")):
                _PROBES[key] = (False, "bwrap is not installed (scripts/install_system_packages.sh)")
            else:
                cmd = _bwrap_command(python, 1) + [python, "-I", "-S", "-c", "import os; os.getpid()"]
                try:
                    r = subprocess.run(cmd, capture_output=True, timeout=60, **_drop_kwargs(uid))
                    ok = r.returncode == 0
                    _PROBES[key] = (ok, "" if ok else r.stderr.decode(errors="replace").strip()[:500])
                except (OSError, subprocess.SubprocessError) as e:
                    _PROBES[key] = (False, f"{type(e).__name__}: {e}")
        return _PROBES[key]


def resolve_backend(requested: str, python: str, uid: int) -> str:
    """``bwrap`` or ``rlimits``. ``auto`` falls back (loudly); an explicit ``bwrap`` raises if unusable."""
    if requested not in BACKENDS:
        raise ValueError(f"sandbox backend {requested!r} is not one of {BACKENDS}")
    if requested == "rlimits":
        _warn_degraded("rlimits backend requested explicitly")
        return "rlimits"
    ok, why = probe_bwrap(python, uid)
    if ok:
        return "bwrap"
    if requested == "bwrap":
        raise SandboxUnavailable(f"bubblewrap cannot create namespaces here: {why}")
    _warn_degraded(why)
    return "rlimits"


_WARNED: set[str] = set()


def _warn_degraded(why: str) -> None:
    if why in _WARNED:
        return
    _WARNED.add(why)
    who = "a dedicated uid per launch" if _is_root() else "THE TRAINER'S OWN UID (not root: no uid drop)"
    logger.error(
        "\n" + "!" * 100 + "\nSANDBOX DEGRADED: untrusted code runs WITHOUT namespaces (%s).\n"
        "Fallback = rlimits + %s + seccomp (no network sockets, no signals). There is NO filesystem or "
        "network namespace:\nprograms can read world-readable host files and write world-writable directories."
        " Enable unprivileged user namespaces\n(or run the trainer where bubblewrap works) before training on"
        " untrusted code.\n" + "!" * 100, why, who)


# ----------------------------------------------------------------------------------------------------------
# Launching the supervisor.
# ----------------------------------------------------------------------------------------------------------

class _UidSlots:
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


class _Supervisor:
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


def _remove_files_of(uid: int) -> None:
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


def _kill_uid(uid: int) -> None:
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


def _support_files(python: str, uid: int) -> str:
    """A directory (readable by the sandbox uid) holding the supervisor compiled by the sandbox's interpreter,
    so no launch pays for compiling it; removed at exit."""
    candidates = [tempfile.gettempdir(), "/tmp", "/dev/shm"]
    for base in candidates:
        if not os.path.isdir(base) or (_is_root() and not _reachable_by(base, uid, uid, need=1)):
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


class Sandbox:
    """Runs programs under :class:`SandboxLimits`. Thread-safe: concurrent launches use separate sandboxes.

    With bubblewrap, a sandbox serves up to ``reuse`` launches before it is replaced (``reuse=1``: a fresh
    sandbox per launch): bwrap's start-up (~5-8 ms) then costs nothing per program. Between launches the
    supervisor has killed every process the last one started and emptied ``/tmp`` and ``/dev/shm``; SysV and
    POSIX message-queue IPC, which would outlive processes, is denied by the seccomp filter. Call
    :meth:`close` (or use ``with``) to stop the warm sandboxes.
    """

    def __init__(self, limits: SandboxLimits | None = None, *, backend: str = "auto", python: str = "",
                 uid: int = 65534, fallback_uid_base: int = 1_900_000_000, reuse: int = 64):
        self.limits = limits or SandboxLimits()
        self.uid = uid
        self.reuse = max(1, int(reuse))
        self.python = choose_python(python, uid)
        self.backend = resolve_backend(backend, self.python, uid)
        self._slots = _UidSlots(fallback_uid_base)
        self._bpf = seccomp_bpf(deny_signals=self.backend == "rlimits")
        self._support = _support_files(self.python, uid)
        self._supervisor = os.path.join(self._support, "supervisor.pyc")
        self._bpf_path = None
        if self._bpf is not None:
            self._bpf_path = os.path.join(self._support, "seccomp.bpf")
            Path(self._bpf_path).write_bytes(self._bpf)
        if self.backend == "bwrap":
            self._command = _bwrap_command(self.python, self.limits.tmpfs_mb, self._supervisor)
        self._idle: list[_Supervisor] = []
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, Sandbox._shutdown, self._idle, self._lock, self._support)

    # -- public --------------------------------------------------------------------------------------------

    def run(self, source: str, stdin: str = "", *, filename: str = "program.py") -> SandboxResult:
        """Run one program on ``stdin``, as the CLI does."""
        outcomes, error = self._launch(source, [HarnessTest("stdin", stdin)], prelude="", filename=filename,
                                       stop_after_timeout=True)
        o = outcomes[0]
        status = "runtime_error" if o.status == "wrong_answer" else o.status
        return SandboxResult(status=status, exit_code=o.exit_code, stdout=o.stdout, stderr=o.stderr,
                             cpu_seconds=round(o.cpu_seconds, 4), wall_seconds=round(o.wall_seconds, 4),
                             backend=self.backend, error=error or o.error)

    def run_tests(self, source: str, tests: Sequence[HarnessTest], *, prelude: str = "",
                  stop_after_timeout: bool = True) -> tuple[list[TestOutcome], str]:
        """Run every test of one program in one launch. Returns the outcomes (in order) and a launch-level
        error ("" when the launch itself worked)."""
        return self._launch(source, list(tests), prelude=prelude, filename="solution.py",
                            stop_after_timeout=stop_after_timeout)

    def close(self) -> None:
        """Stop the warm sandboxes (idempotent); later launches start fresh ones."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------------

    @staticmethod
    def _shutdown(idle: list[_Supervisor], lock: threading.Lock, support: str) -> None:
        with lock:
            sups, idle[:] = list(idle), []
        for sup in sups:
            sup.close()
        shutil.rmtree(support, ignore_errors=True)

    def _spec(self, source: str, tests: list[HarnessTest], prelude: str, filename: str, work_dir: str,
              stop_after_timeout: bool) -> dict:
        return {
            "source": source, "filename": filename, "prelude": prelude, "work_dir": work_dir,
            "tests": [t.to_spec(self.limits) for t in tests], "limits": self.limits.to_spec(),
            "seccomp_bpf": self._bpf if self.backend == "rlimits" else None,
            "stop_after_timeout": stop_after_timeout,
            "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work_dir, "TMPDIR": work_dir},
            "report_budget": max(16 << 20, 4 * self.limits.output_bytes),
            "wipe_dirs": ["/tmp", "/dev/shm"] if self.backend == "bwrap" else [],
        }

    def _new_bwrap(self) -> _Supervisor:
        cmd = list(self._command)
        bpf_fd = None
        if self._bpf_path is not None:
            bpf_fd = os.open(self._bpf_path, os.O_RDONLY)
            cmd += ["--seccomp", str(bpf_fd)]
        cmd += [self.python, "-I", "-S", "/.supervisor.pyc"]
        try:
            return _Supervisor(cmd, pass_fds=() if bpf_fd is None else (bpf_fd,), **_drop_kwargs(self.uid))
        finally:
            if bpf_fd is not None:
                os.close(bpf_fd)

    def _acquire(self) -> _Supervisor:
        with self._lock:
            while self._idle:
                sup = self._idle.pop()
                if sup.alive():
                    return sup
                sup.close(kill=True)
        return self._new_bwrap()

    def _release(self, sup: _Supervisor) -> None:
        if self._closed or sup.launches >= self.reuse or not sup.alive():
            sup.close()
            return
        with self._lock:
            self._idle.append(sup)

    def _launch(self, source: str, tests: list[HarnessTest], *, prelude: str, filename: str,
                stop_after_timeout: bool) -> tuple[list[TestOutcome], str]:
        if not tests:
            return [], ""
        cap = max(16 << 20, 4 * self.limits.output_bytes) + (4 << 20)
        deadline = time.monotonic() + self.limits.total_wall_seconds + 30.0  # start-up on a loaded machine
        uid = work_dir = None
        try:
            if self.backend == "bwrap":
                sup = self._acquire()
                spec = self._spec(source, tests, prelude, filename, "/tmp", stop_after_timeout)
            else:
                work_dir = tempfile.mkdtemp(prefix="srpo-sandbox-")
                spec = self._spec(source, tests, prelude, filename, work_dir, stop_after_timeout)
                if _is_root():
                    uid = self._slots.acquire()
                    os.chown(work_dir, uid, uid)
                    spec["drop_uid"] = uid
                else:
                    spec["count_nproc_base"] = True
                os.chmod(work_dir, stat.S_IRWXU)
                sup = _Supervisor([self.python, "-I", "-S", self._supervisor], cwd=work_dir,
                                  env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except OSError as e:
            self._cleanup(uid, work_dir)
            return self._failed(tests, f"cannot start the sandbox: {e}")
        report, problem = None, "launch interrupted"
        try:
            report, problem = sup.request(spec, deadline, cap)
        finally:
            if self.backend == "bwrap" and not problem:
                self._release(sup)
            else:
                sup.close(kill=bool(problem))
            self._cleanup(uid, work_dir)
        if problem:
            return self._failed(tests, problem)
        outcomes = [_classify(t, facts, self.limits) for t, facts in zip(tests, report["tests"])]
        outcomes += [TestOutcome("not_run") for _ in range(len(tests) - len(outcomes))]
        if report.get("error"):
            return outcomes, f"supervisor error: {report['error']}"
        return outcomes, ""

    def _cleanup(self, uid: int | None, work_dir: str | None) -> None:
        if uid is not None:
            _kill_uid(uid)
            _remove_files_of(uid)
            self._slots.release(uid)
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)

    @staticmethod
    def _failed(tests: list[HarnessTest], why: str) -> tuple[list[TestOutcome], str]:
        logger.warning("sandbox launch failed: %s", why)
        return [TestOutcome("sandbox_error", error=why) for _ in tests], why


def _last_frame(result: bytes) -> tuple[bytes, bytes]:
    """The last ``\\0 tag payload`` frame of a child's result channel."""
    if not result:
        return b"", b""
    frame = result.rsplit(b"\0", 1)[-1]
    return frame[:1], frame[1:]


def _classify(test: HarnessTest, facts: dict | None, limits: SandboxLimits) -> TestOutcome:
    """A test's status from the supervisor's raw facts."""
    if facts is None:
        return TestOutcome("not_run")
    tag, payload = _last_frame(facts["result"])
    text = payload.decode("utf-8", errors="replace")
    o = TestOutcome(
        status="ok",
        exit_code=facts["exit_code"] if facts["signal"] is None else -facts["signal"],
        stdout=facts["stdout"].decode("utf-8", errors="replace"),
        stderr=facts["stderr"][:STDERR_KEEP_BYTES].decode("utf-8", errors="replace"),
        cpu_seconds=facts["cpu_seconds"], wall_seconds=facts["wall_seconds"], max_rss_mb=facts["max_rss_mb"],
    )
    cpu_limit = test.cpu_seconds or limits.cpu_seconds
    sig = facts["signal"]
    if tag == b"S":
        o.status, o.error = "sandbox_error", f"child set-up failed: {text}"
    elif facts.get("memory_overflow"):
        o.status, o.error = "memory_limit", f"all processes together over {limits.memory_mb} MB"
    elif facts["overflow"]:
        o.status, o.error = "output_limit", f"{facts['overflow']} exceeded {limits.output_bytes} bytes"
    elif facts["wall_timeout"]:
        o.status, o.error = "timeout", f"wall-clock limit ({limits.wall_seconds:g} s)"
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and facts["cpu_seconds"] >= cpu_limit):
        o.status, o.error = "timeout", f"CPU limit ({cpu_limit:g} s)"
    elif tag == b"M" or (facts["exit_code"] != 0 and any(m in o.stderr for m in _MEMORY_MARKERS)):
        o.status, o.error = "memory_limit", f"address-space limit ({limits.memory_mb} MB)"
    elif facts["exit_code"] != 0:
        o.status = "wrong_answer" if tag == b"W" and test.kind == "check" else "runtime_error"
        o.error = text or (f"killed by signal {sig}" if sig else f"exit code {facts['exit_code']}")
    elif test.kind == "functional":
        if tag == b"V":
            o.value_json = text
        else:
            o.status, o.error = "runtime_error", "no return value reported"
    elif test.kind == "check" and tag != b"P":
        o.status, o.error = "runtime_error", "check() did not complete"
    return o


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    from srpo_mcore.config.rewards import RewardConfig

    defaults = RewardConfig()
    ap = argparse.ArgumentParser(prog="python -m srpo_mcore.rewards.sandbox",
                                 description="Run one Python program in the sandbox; print one JSON line.")
    ap.add_argument("program", help="the Python program to run")
    ap.add_argument("--stdin", help="file fed to the program's standard input")
    ap.add_argument("--timeout", type=float, default=defaults.sandbox_cpu_seconds, help="CPU seconds")
    ap.add_argument("--wall-timeout", type=float, default=None,
                    help="wall-clock seconds (default: max(2 x timeout + 1, sandbox_wall_seconds))")
    ap.add_argument("--memory-mb", type=int, default=defaults.sandbox_memory_mb, help="address-space limit")
    ap.add_argument("--output-bytes", type=int, default=defaults.sandbox_output_bytes)
    ap.add_argument("--backend", choices=BACKENDS, default=defaults.sandbox_backend)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    wall = args.wall_timeout or max(2 * args.timeout + 1, defaults.sandbox_wall_seconds)
    limits = SandboxLimits(cpu_seconds=args.timeout, wall_seconds=wall,
                           total_wall_seconds=wall * defaults.sandbox_wall_stretch + 5,
                           memory_mb=args.memory_mb, output_bytes=args.output_bytes,
                           max_processes=defaults.sandbox_max_processes, file_size_mb=defaults.sandbox_file_size_mb,
                           tmpfs_mb=defaults.sandbox_tmpfs_mb, wall_stretch=defaults.sandbox_wall_stretch)
    source = Path(args.program).read_text(encoding="utf-8", errors="surrogateescape")
    stdin = Path(args.stdin).read_text(encoding="utf-8", errors="surrogateescape") if args.stdin else ""
    try:
        sandbox = Sandbox(limits, backend=args.backend, python=defaults.sandbox_python, uid=defaults.sandbox_uid)
        with sandbox:
            result = sandbox.run(source, stdin, filename=Path(args.program).name)
    except SandboxUnavailable as e:
        result = SandboxResult("sandbox_error", None, "", "", 0.0, 0.0, args.backend, error=str(e))
    print(result.to_json(), flush=True)
    return 0 if result.status != "sandbox_error" else 2


if __name__ == "__main__":
    sys.exit(main())
