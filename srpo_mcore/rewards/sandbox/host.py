"""Host facts, probed once per process: which interpreter the sandbox runs, whether bubblewrap can create
namespaces (else the degraded ``rlimits`` backend, logged loudly), the seccomp filter and the bubblewrap command."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from srpo_mcore.rewards.sandbox.records import BACKENDS, SandboxUnavailable

logger = logging.getLogger(__name__)

_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def is_root() -> bool:
    return os.geteuid() == 0


def reachable_by(path: str, uid: int, gid: int, *, need: int) -> bool:
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
    if uid is None or not is_root():
        return candidates[0]
    for cand in candidates:
        lib = Path(_prefix_of(cand)) / "lib"
        if reachable_by(cand, uid, uid, need=5) and reachable_by(str(lib), uid, uid, need=5):
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


def bwrap_command(python: str, tmpfs_mb: int, supervisor: str | None = None) -> list[str]:
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


def drop_privileges_kwargs(uid: int) -> dict:
    """``subprocess`` arguments that start the child as ``uid`` (what ``setpriv --reuid --regid
    --clear-groups`` does), when we are root; nothing otherwise."""
    if not is_root():
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
                cmd = bwrap_command(python, 1) + [python, "-I", "-S", "-c", "import os; os.getpid()"]
                try:
                    r = subprocess.run(cmd, capture_output=True, timeout=60, **drop_privileges_kwargs(uid))
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
    who = "a dedicated uid per launch" if is_root() else "THE TRAINER'S OWN UID (not root: no uid drop)"
    logger.error(
        "\n" + "!" * 100 + "\nSANDBOX DEGRADED: untrusted code runs WITHOUT namespaces (%s).\n"
        "Fallback = rlimits + %s + seccomp (no network sockets, no signals). There is NO filesystem or "
        "network namespace:\nprograms can read world-readable host files and write world-writable directories."
        " Enable unprivileged user namespaces\n(or run the trainer where bubblewrap works) before training on"
        " untrusted code.\n" + "!" * 100, why, who)

