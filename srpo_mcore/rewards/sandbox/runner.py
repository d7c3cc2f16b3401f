"""The :class:`Sandbox`: runs programs and test lists on warm supervisors and classifies each test's facts
into an outcome (status, output, CPU and wall time)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from srpo_mcore.rewards.sandbox.host import (
    bwrap_command,
    choose_python,
    drop_privileges_kwargs,
    is_root,
    resolve_backend,
    seccomp_bpf,
)
from srpo_mcore.rewards.sandbox.records import (
    STDERR_KEEP_BYTES,
    HarnessTest,
    SandboxLimits,
    SandboxResult,
    TestOutcome,
)
from srpo_mcore.rewards.sandbox.supervisor import (
    Supervisor,
    UidSlots,
    kill_uid,
    remove_files_of,
    support_files,
)

logger = logging.getLogger(__name__)

_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


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
        self._slots = UidSlots(fallback_uid_base)
        self._bpf = seccomp_bpf(deny_signals=self.backend == "rlimits")
        self._support = support_files(self.python, uid)
        self._supervisor = os.path.join(self._support, "supervisor.pyc")
        self._bpf_path = None
        if self._bpf is not None:
            self._bpf_path = os.path.join(self._support, "seccomp.bpf")
            Path(self._bpf_path).write_bytes(self._bpf)
        if self.backend == "bwrap":
            self._command = bwrap_command(self.python, self.limits.tmpfs_mb, self._supervisor)
        self._idle: list[Supervisor] = []
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
    def _shutdown(idle: list[Supervisor], lock: threading.Lock, support: str) -> None:
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

    def _new_bwrap(self) -> Supervisor:
        cmd = list(self._command)
        bpf_fd = None
        if self._bpf_path is not None:
            bpf_fd = os.open(self._bpf_path, os.O_RDONLY)
            cmd += ["--seccomp", str(bpf_fd)]
        cmd += [self.python, "-I", "-S", "/.supervisor.pyc"]
        try:
            return Supervisor(cmd, pass_fds=() if bpf_fd is None else (bpf_fd,), **drop_privileges_kwargs(self.uid))
        finally:
            if bpf_fd is not None:
                os.close(bpf_fd)

    def _acquire(self) -> Supervisor:
        with self._lock:
            while self._idle:
                sup = self._idle.pop()
                if sup.alive():
                    return sup
                sup.close(kill=True)
        return self._new_bwrap()

    def _release(self, sup: Supervisor) -> None:
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
                if is_root():
                    uid = self._slots.acquire()
                    os.chown(work_dir, uid, uid)
                    spec["drop_uid"] = uid
                else:
                    spec["count_nproc_base"] = True
                os.chmod(work_dir, stat.S_IRWXU)
                sup = Supervisor([self.python, "-I", "-S", self._supervisor], cwd=work_dir,
                                  env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        except OSError as e:
            self._cleanup(uid, work_dir)
            return self._failed(tests, f"cannot start the sandbox: {e}")
        report: dict | None = None
        problem = "launch interrupted"
        try:
            report, problem = sup.request(spec, deadline, cap)
        finally:
            if self.backend == "bwrap" and not problem:
                self._release(sup)
            else:
                sup.close(kill=bool(problem))
            self._cleanup(uid, work_dir)
        if problem or report is None:
            return self._failed(tests, problem or "the supervisor sent no report")
        outcomes = [_classify(t, facts, self.limits) for t, facts in zip(tests, report["tests"])]
        outcomes += [TestOutcome("not_run") for _ in range(len(tests) - len(outcomes))]
        if report.get("error"):
            return outcomes, f"supervisor error: {report['error']}"
        return outcomes, ""

    def _cleanup(self, uid: int | None, work_dir: str | None) -> None:
        if uid is not None:
            kill_uid(uid)
            remove_files_of(uid)
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
