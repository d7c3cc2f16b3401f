"""Run untrusted Python code: a bubblewrap sandbox with rlimits, an unprivileged uid and a seccomp filter.

Model-written code is untrusted input on the training cluster; this package is the project's boundary for it.
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
* the supervisor (``pid1.py``, ``python -I -S``) is PID 1 of the sandbox: processes inside cannot
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

Modules: ``records`` (limits, tests, outcomes), ``host`` (interpreter choice, bubblewrap probe, seccomp filter,
bubblewrap command), ``supervisor`` (launching and cleaning up after ``pid1.py``, the program that runs inside),
``runner`` (:class:`Sandbox`: launches, and each test's facts classified into an outcome) and ``__main__``
(``python -m srpo_mcore.rewards.sandbox PROGRAM.py [--stdin FILE] [--timeout S] [--memory-mb N]`` runs one program
and prints one JSON line).
"""

from srpo_mcore.rewards.sandbox.host import choose_python, probe_bwrap
from srpo_mcore.rewards.sandbox.records import (
    BACKENDS,
    STATUSES,
    HarnessTest,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    TestOutcome,
    limits_from_config,
)
from srpo_mcore.rewards.sandbox.runner import Sandbox

__all__ = ["BACKENDS", "STATUSES", "HarnessTest", "Sandbox", "SandboxLimits", "SandboxResult", "SandboxUnavailable",
           "TestOutcome", "choose_python", "limits_from_config", "probe_bwrap"]
