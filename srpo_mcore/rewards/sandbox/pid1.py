"""The sandbox supervisor: runs untrusted Python code test by test and reports raw facts.

Standard library only, and one file on purpose (~650 lines: child set-up, the test harness, process control and
the serve loop): it runs where the project is not importable, so the host (``supervisor.py``) ships this one
source, compiled by the sandbox's interpreter, and starts it with ``python -I -S``: inside bubblewrap it is PID 1
of the sandbox's PID namespace; in the degraded fallback (no user namespaces) it runs on the host. It reads one ``marshal`` spec from stdin, runs every test in a forked child
(the warm interpreter is reused: no second interpreter start-up), and writes one ``marshal`` report to stdout.

Trust boundary: this process never executes the untrusted program; only its children do, after they have
set rlimits, dropped the uid (fallback), set ``no_new_privs`` and loaded the seccomp filter. The supervisor is
a child subreaper (and, as PID 1, the namespace's init), is not dumpable (so its memory and file descriptors
cannot be reached through /proc), and kills and reaps every process a test leaves behind before the next
test starts. It classifies nothing: the host decides each test's status from the facts reported here, and
compares outputs with expected values that never enter the sandbox.

Result channel (fd 3 of a child): frames ``b"\\0" + tag + payload``; the host reads the last frame.
``V`` json of the return value (functional), ``P`` check passed, ``W`` assertion failed (wrong answer),
``M`` MemoryError, ``E`` other exception, ``S`` the child's set-up failed (sandbox error).
"""

import _signal as signal  # the C module: ``signal`` would import enum (~5 ms of start-up)
import builtins
import marshal
import os
import resource
import select
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
RESULT_FD = 3
READ_CHUNK = 1 << 16
WALL_STRETCH = 3.0  # a busy program may run up to 3 x its wall limit on a loaded machine
MEMORY_CHECK_S = 0.05  # how often all the sandbox's processes are weighed together
BUSY_SHARE = 0.02  # "busy": it got at least 2% of a core since the last look (sleepers get ~0)


def _libc_function(name):
    """A libc function through ``_ctypes`` alone (importing ``ctypes`` costs ~5 ms per launch)."""
    import _ctypes

    return _ctypes.dlsym(_ctypes.dlopen(None, 0x102), name), _ctypes.call_function


def _prctl(option, arg2=0):
    fn, call = _libc_function("prctl")
    if call(fn, (option, arg2, 0, 0, 0)) != 0:
        raise OSError(f"prctl({option}, {arg2}) failed")


def _load_seccomp(bpf):
    """Install a classic-BPF seccomp program (exported by libseccomp on the host); fallback backend only
    (under bubblewrap, bwrap loads the same program for the whole sandbox with ``--seccomp``)."""
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.POINTER(SockFilter)))
    if libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog),
                  ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "seccomp: " + os.strerror(err))


class _Quitter:
    """``exit()``/``quit()`` as the site module defines them (``-S`` skips site)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code=None):
        raise SystemExit(code)


# --------------------------------------------------------------------------------------------------
# In the child: set-up, then the untrusted program.
# --------------------------------------------------------------------------------------------------

def _write_frame(tag, payload=b""):
    data = b"\0" + tag + payload
    try:
        while data:
            data = data[os.write(RESULT_FD, data):]
    except OSError:
        pass


def _set_limits(lim, cpu_seconds):
    cpu = max(1, int(cpu_seconds + 0.999))
    mem = int(lim["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    nproc = lim["max_processes"] + lim.get("nproc_base", 0)
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    fsize = int(lim["file_size_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))


def _child_setup(spec, test, stdin_fd, out_w, err_w, res_w):
    """Everything between fork and the untrusted code; runs with the supervisor's privileges."""
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(res_w, RESULT_FD)
    os.closerange(RESULT_FD + 1, 1 << 16)
    os.chdir(spec["work_dir"])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _set_limits(spec["limits"], test.get("cpu_seconds") or spec["limits"]["cpu_seconds"])
    uid = spec.get("drop_uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if not spec["pid1"]:
        # Under bubblewrap the PID namespace dies with its init (us), bwrap already set no_new_privs and
        # loaded the seccomp program for the whole sandbox. In the fallback, the child does it.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if spec.get("seccomp_bpf"):
            _load_seccomp(spec["seccomp_bpf"])
    os.environ.clear()
    os.environ.update(spec["env"])
    import io

    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                  errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    sys.argv = [spec["filename"]]


def _new_module(name, filename):
    mod = type(sys)(name)
    mod.__file__ = filename
    mod.__builtins__ = builtins
    sys.modules[name] = mod
    return mod.__dict__


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _finish_threads():
    """What interpreter shutdown would do: join non-daemon threads, run atexit hooks."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()


_SEMANTIC_DUNDERS = frozenset(
    "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __bool__ __len__ __abs__ __neg__ __pos__ __add__ __radd__ "
    "__sub__ __rsub__ __mul__ __rmul__ __truediv__ __floordiv__ __mod__ __pow__ __round__ __float__ __int__ "
    "__index__ __contains__ __iter__ __getitem__ __getattr__ __getattribute__ __str__ __repr__ __format__ "
    "__instancecheck__ __class__".split())
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_PLAIN_CONTAINERS = (list, tuple, dict, set, frozenset)


def _check_plain(value, node_types):
    """Reject return values that could fake equality (an object whose ``__eq__`` always says True).

    Accepted: exact builtin types, nested; the prelude's ``ListNode``/``TreeNode``; objects whose class
    (and bases) define none of the comparison, arithmetic, conversion or container special methods.
    """
    stack, seen = [value], set()
    while stack:
        x = stack.pop()
        t = type(x)
        if t in _PLAIN_SCALARS:
            continue
        if id(x) in seen:
            continue
        seen.add(id(x))
        if t in _PLAIN_CONTAINERS:
            if t is dict:
                stack.extend(x.keys())
                stack.extend(x.values())
            else:
                stack.extend(x)
            continue
        if t in node_types:
            stack.extend(v for k, v in vars(x).items())
            continue
        for klass in t.__mro__[:-1]:
            bad = _SEMANTIC_DUNDERS.intersection(vars(klass))
            if bad:
                raise TypeError(f"return value of type {t.__name__} overrides {', '.join(sorted(bad))}")


def _jsonable(value):
    """Return values as JSON: tuples and sets become lists (as judges compare them)."""
    t = type(value)
    if t in (list, tuple):
        return [_jsonable(v) for v in value]
    if t in (set, frozenset):
        items = [_jsonable(v) for v in value]
        try:
            items.sort()
        except TypeError:
            pass
        return items
    if t is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    return value


def _guard(candidate, node_types):
    def guarded(*args, **kwargs):
        result = candidate(*args, **kwargs)
        _check_plain(result, node_types)
        return result

    return guarded


def _run_program(spec, test):
    """Execute the untrusted program for one test; returns the exit code."""
    kind = test["kind"]
    filename = spec["filename"]
    name = "__main__" if kind == "stdin" else "solution"
    ns = _new_module(name, filename)
    if kind != "stdin" and spec.get("prelude"):
        exec(spec["prelude_code"], ns)
    # The prelude's node classes, taken before the program could redefine them.
    node_types = tuple(t for t in (ns.get("ListNode"), ns.get("TreeNode")) if isinstance(t, type))
    exec(compile(spec["source"], filename, "exec"), ns)
    if kind == "stdin":
        _finish_threads()
        return 0
    if kind == "functional":
        import json

        fn = eval(test["entry_point"], ns)
        args = [json.loads(line) for line in test["input"].split("\n") if line.strip()]
        value = fn(*args)
        _check_plain(value, node_types)
        _write_frame(b"V", json.dumps(_jsonable(value)).encode())
        return 0
    # kind == "check": the test source defines check(candidate) and may call it itself.
    snapshot = spec["builtins_snapshot"]
    tns = {k: v for k, v in ns.items() if k not in snapshot}
    tns["__builtins__"] = dict(snapshot)
    tns["__name__"] = "tests"
    exec(compile(test["input"], "<tests>", "exec"), tns)
    if test.get("entry_point"):
        tns["check"](_guard(eval(test["entry_point"], ns), node_types))
    _write_frame(b"P")
    return 0


def _child_main(spec, test, stdin_fd, out_w, err_w, res_w):
    try:
        _child_setup(spec, test, stdin_fd, out_w, err_w, res_w)
    except BaseException as e:  # noqa: BLE001 - report and leave
        _write_frame(b"S", f"{type(e).__name__}: {e}".encode("utf-8", "replace"))
        os._exit(121)
    code = 1
    try:
        code = _run_program(spec, test)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code & 0xFF
        else:
            try:
                sys.stderr.write(str(e.code) + "\n")
            except Exception:
                pass
            code = 1
        if code == 0 and test["kind"] != "stdin":
            code = 1  # a functional/check test must return normally; exiting early is a failure
            _write_frame(b"E", b"SystemExit before the test finished")
    except MemoryError:
        _write_frame(b"M")
        code = 1
    except BaseException as e:  # noqa: BLE001 - the program's own error
        summary = f"{type(e).__name__}: {e}"[:2000].encode("utf-8", "replace")
        _write_frame(b"W" if isinstance(e, AssertionError) else b"E", summary)
        try:
            import traceback

            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_globals is globals():
                tb = tb.tb_next  # the supervisor's own frames are noise to the reader
            traceback.print_exception(type(e), e, tb)
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    _flush_std()
    os._exit(code)


# --------------------------------------------------------------------------------------------------
# In the supervisor.
# --------------------------------------------------------------------------------------------------

def _children_of_me():
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[1].decode() == me:
            out.append(int(entry))
    return out


def _reap_nohang():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_everything(pid1):
    """Kill and reap every process the tests started (orphans were re-parented to us)."""
    if pid1:
        try:
            os.kill(-1, signal.SIGKILL)  # as a namespace's init: everyone in it but us
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    for _ in range(10000):
        kids = _children_of_me()
        if not kids:
            return
        for pid in kids:
            for target in (pid, -pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.001)
        _reap_nohang()


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid):
    """User + system CPU seconds of a (live) child so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _private_memory(spec):
    """Resident, non-shared memory of every process the tests started: under bubblewrap every process in
    the PID namespace but us; in the fallback as root, every process of the dedicated uid (unprivileged
    fallback: not measured)."""
    uid = spec.get("drop_uid")
    if not spec["pid1"] and uid is None:
        return 0
    me = str(os.getpid())
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        try:
            if uid is not None and os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/statm", "rb") as f:
                fields = f.read().split()
            total += (int(fields[1]) - int(fields[2])) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def _stdin_fd(data):
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run_test(spec, test, deadline):
    lim = spec["limits"]
    cap = lim["output_bytes"]
    caps = {"stdout": cap, "stderr": cap, "result": 2 * cap + 4096}
    stdin_fd = _stdin_fd(test.get("input", "").encode("utf-8", "surrogateescape")
                         if test["kind"] == "stdin" else b"")
    pipes = {name: os.pipe() for name in caps}
    start = time.monotonic()
    wall = test.get("wall_seconds") or lim["wall_seconds"]
    wall_end = min(deadline, start + wall)
    hard_end = min(deadline, start + lim.get("wall_stretch", WALL_STRETCH) * wall)
    last_cpu, last_check = 0.0, start
    mem_limit = int(lim["memory_mb"]) << 20
    next_mem_check = start + MEMORY_CHECK_S
    pid = os.fork()
    if pid == 0:
        _child_main(spec, test, stdin_fd, pipes["stdout"][1], pipes["stderr"][1], pipes["result"][1])
        os._exit(122)
    os.close(stdin_fd)
    for _, w in pipes.values():
        os.close(w)
    readers = {r: name for name, (r, _) in pipes.items()}
    bufs = {name: bytearray() for name in caps}
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    facts = {"overflow": None, "wall_timeout": False, "memory_overflow": False}
    status = rusage = None

    def pump(timeout):
        watch = list(readers) + ([pidfd] if pidfd is not None else [])
        ready, _, _ = select.select(watch, [], [], max(0.0, timeout))
        for fd in ready:
            if fd == pidfd:
                continue
            chunk = os.read(fd, READ_CHUNK)
            name = readers[fd]
            if not chunk:
                del readers[fd]
                os.close(fd)
                continue
            bufs[name] += chunk
            if len(bufs[name]) > caps[name] and facts["overflow"] is None:
                facts["overflow"] = name
        return ready

    while status is None:
        now = time.monotonic()
        if now >= next_mem_check:
            # RLIMIT_AS bounds each process; this bounds all of them together (processes x address space).
            facts["memory_overflow"] = _private_memory(spec) > mem_limit
            next_mem_check = now + MEMORY_CHECK_S
        if facts["overflow"] is None and wall_end <= now < hard_end:
            # Judged by CPU time: a program still computing (but slowed by a loaded machine) gets more wall
            # time, up to WALL_STRETCH x the limit; its CPU limit still applies. One that sleeps does not.
            cpu = _cpu_seconds(pid)
            if cpu - last_cpu >= BUSY_SHARE * (now - last_check):
                wall_end = min(hard_end, now + 1.0)
            last_cpu, last_check = cpu, now
        if facts["overflow"] is not None or facts["memory_overflow"] or now >= wall_end:
            facts["wall_timeout"] = facts["overflow"] is None and not facts["memory_overflow"]
            for target in (pid, -pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            _, status, rusage = os.wait4(pid, 0)
            break
        pump(min(wall_end - now, next_mem_check - now, 0.005 if pidfd is None else 3600.0))
        waited, st, ru = os.wait4(pid, os.WNOHANG)
        if waited:
            status, rusage = st, ru
    elapsed = time.monotonic() - start
    _kill_everything(spec["pid1"])
    drain_end = time.monotonic() + 1.0
    while readers and time.monotonic() < drain_end:
        if not pump(drain_end - time.monotonic()):
            break
    for fd in list(readers):
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    return {
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_seconds": rusage.ru_utime + rusage.ru_stime,
        "wall_seconds": elapsed,
        "max_rss_mb": rusage.ru_maxrss / 1024.0,
        "wall_timeout": facts["wall_timeout"],
        "overflow": facts["overflow"],
        "memory_overflow": facts["memory_overflow"],
        "stdout": bytes(bufs["stdout"][:cap]),
        "stderr": bytes(bufs["stderr"][:cap]),
        "result": bytes(bufs["result"][:caps["result"]]),
    }


def _tasks_of_uid(uid):
    """Threads of ``uid`` on this machine: RLIMIT_NPROC counts them all (the unprivileged fallback)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = f.read()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1 0").split()[0]) == uid:
                total += int(fields.get("Threads", "1"))
    return total


_BUILTINS_SNAPSHOT = dict(vars(builtins))  # before anything runs: what check() code gets as builtins
_PRELUDES: dict[str, str] = {}


def _prepare(spec, pid1):
    spec["pid1"] = pid1
    spec["builtins_snapshot"] = _BUILTINS_SNAPSHOT
    if spec.get("count_nproc_base"):
        spec["limits"]["nproc_base"] = _tasks_of_uid(os.getuid())
    prelude = spec.get("prelude")
    if prelude:
        if prelude not in _PRELUDES:
            # Import the prelude's modules once, here: every forked test (and later launch) finds them loaded.
            code = compile(prelude, "<prelude>", "exec")
            exec(code, {"__name__": "prelude_warmup", "__builtins__": builtins})
            _PRELUDES[prelude] = code
        spec["prelude_code"] = _PRELUDES[prelude]
    if any(t["kind"] == "functional" for t in spec["tests"]):
        import json  # noqa: F401 - loaded once for all forked tests


def _serve(spec, pid1):
    """Run one launch's tests; returns the report."""
    started = time.monotonic()
    report = {"tests": [], "error": None}
    try:
        _prepare(spec, pid1)
        deadline = started + spec["limits"]["total_wall_seconds"]
        budget = spec.get("report_budget", 16 << 20)
        stop = False
        for test in spec["tests"]:
            if stop or time.monotonic() >= deadline or budget <= 0:
                report["tests"].append(None)  # not run
                continue
            facts = _run_test(spec, test, deadline)
            report["tests"].append(facts)
            budget -= len(facts["stdout"]) + len(facts["stderr"]) + len(facts["result"])
            cpu_limit = test.get("cpu_seconds") or spec["limits"]["cpu_seconds"]
            timed_out = (facts["wall_timeout"] or facts["signal"] == signal.SIGXCPU
                         or (facts["signal"] == signal.SIGKILL and facts["cpu_seconds"] >= cpu_limit))
            stop = timed_out and spec.get("stop_after_timeout", True)
    except BaseException as e:  # noqa: BLE001 - reported as a sandbox error
        report["error"] = f"{type(e).__name__}: {e}"
    _kill_everything(pid1)
    return report


def _wipe(top):
    """Empty a directory the programs could write (files of the same uid, whatever their modes)."""
    try:
        os.chmod(top, 0o700)
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _wipe(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _read_exact(fd, n):
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _warm_up():
    """Do once, here, what every forked test would otherwise do for the first time in its own process:
    compile and run source (CPython builds its AST types and parser state lazily, on the first ``compile()``),
    wrap a file in a ``TextIOWrapper`` (codec lookup) and import ``atexit``. A child inherits it all from the fork.
    Measured on the 2-core machine (/usr/bin/python3.11): a child that prints one line cost 2.36 ms of CPU cold,
    0.77 ms warm (fork and exit alone: 0.4 ms); docs/benchmarks.md "Rewards". Touches no state a test can see:
    the namespace is thrown away and ``atexit`` is importable by any program anyway."""
    import atexit  # noqa: F401 - _finish_threads imports it in every child
    import io

    exec(compile("_ = [1][0] + 1", "<warm-up>", "exec"), {"__builtins__": builtins})
    io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace").write("warm")


def main():
    """Serve launches: each is an 8-byte little-endian length and a marshal spec on stdin, answered by a
    length and a marshal report on stdout; EOF ends. Between launches every process started by the previous
    one is dead and the writable directories are empty."""
    spec_fd, report_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    _prctl(PR_SET_DUMPABLE, 0)  # no /proc/1/mem or /proc/1/fd for the programs (same uid under bwrap)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans come back to us (as PID 1 they would anyway)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")
    pid1 = os.getpid() == 1
    _warm_up()
    while True:
        header = _read_exact(spec_fd, 8)
        if header is None:
            break
        payload = _read_exact(spec_fd, int.from_bytes(header, "little"))
        if payload is None:
            break
        spec = marshal.loads(payload)
        report = marshal.dumps(_serve(spec, pid1), 4)
        _write_all(report_fd, len(report).to_bytes(8, "little") + report)
        for top in spec.get("wipe_dirs", ()):
            _wipe(top)
    _kill_everything(pid1)
    os._exit(0)


if __name__ == "__main__":
    main()
