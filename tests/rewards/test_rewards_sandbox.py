"""The sandbox against hostile programs, on the real bubblewrap backend and on the rlimits fallback.

Each program must get the right status, leave the host unchanged (no files, no processes, no connections,
no secrets read) and leave the runner working. Limits are tight (``conftest.TEST_LIMITS``: 1 CPU second,
2 wall seconds, 512 MB, 64 KiB of output, 16 processes) so the suite stays quick.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from srpo_mcore.rewards.sandbox import HarnessTest, Sandbox

from .conftest import REPO, TEST_LIMITS


def _procs_matching(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _procs_of_uids(uids: range) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    found.append(int(entry))
            except OSError:
                pass
    return found


class _Listener:
    """A TCP server on the host's loopback that records any connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


NETWORK = """
import socket
for addr in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection(addr, timeout=1)
        print("CONNECTED", addr)
    except OSError as e:
        print("blocked", addr, type(e).__name__)
try:
    socket.getaddrinfo("example.com", 80)
    print("RESOLVED")
except OSError:
    print("no dns")
"""

SNOOP = """
import os
paths = {paths!r}
for p in paths:
    try:
        print("READ", p, open(p, "rb").read(200))
    except OSError as e:
        print("noread", p, type(e).__name__)
print(dict(os.environ))
for pid in ("1", "self"):
    for f in ("environ", "mem"):
        try:
            print(f, pid, open("/proc/%s/%s" % (pid, f), "rb").read(100))
        except OSError as e:
            print("noread /proc", pid, f, type(e).__name__)
"""

WRITE_OUTSIDE = """
import os
for p in {paths!r}:
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write("escaped")
        print("wrote inside the sandbox:", p)
    except OSError as e:
        print("refused", p, type(e).__name__)
"""

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

DAEMON = """
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
print("parent done")
"""

IGNORE_TERM = """
import signal
for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
"""

KILL_PARENT = """
import os, signal
for target in (os.getppid(), 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
print("alive")
"""

PRIVILEGED = """
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
print("shmget", libc.shmget(0, 1 << 20, 0o1000 | 0o600))
print("unshare", libc.unshare(0x10000000))
print("ptrace", libc.ptrace(16, 1, 0, 0))
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("inet socket OPENED")
except OSError:
    print("inet socket refused")
"""


@pytest.fixture(params=["bwrap", "rlimits"])
def box(request, sandbox, fallback_sandbox):
    return sandbox if request.param == "bwrap" else fallback_sandbox


def test_network_is_unreachable(box):
    server = _Listener()
    try:
        r = box.run(NETWORK.format(port=server.port))
    finally:
        server.close()
    assert r.status == "ok", r
    assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout and r.stdout.count("blocked") == 3
    assert server.accepted == 0


def test_host_files_and_environment_are_hidden(monkeypatch, tmp_path, bwrap_available):
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    monkeypatch.setenv("SRPO_TEST_SECRET", token)
    paths = [str(secret), "/etc/shadow", "/root/.bashrc", str(REPO / "pyproject.toml")]
    with Sandbox(TEST_LIMITS, backend="bwrap") as box:  # started after the secret was set
        r = box.run(SNOOP.format(paths=paths))
    assert r.status == "ok", r
    assert token not in r.stdout + r.stderr
    assert "READ" not in r.stdout  # not even world-readable project files are there
    assert "SRPO_TEST_SECRET" not in r.stdout
    assert set(eval(r.stdout.split("\n")[len(paths)])) == {"PATH", "LANG", "HOME", "TMPDIR"}  # noqa: S307


def test_fallback_hides_private_files_and_environment(monkeypatch, tmp_path, fallback_sandbox):
    """Without namespaces, world-readable files are readable (documented); private ones and the env are not."""
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    os.chmod(tmp_path, 0o700)
    monkeypatch.setenv("SRPO_TEST_SECRET", token)
    r = fallback_sandbox.run(SNOOP.format(paths=[str(secret), "/etc/shadow"]))
    assert r.status == "ok", r
    assert token not in r.stdout + r.stderr and "READ" not in r.stdout


def test_writes_never_reach_the_host(box, tmp_path):
    targets = [str(tmp_path / "escape" / "file.txt"), str(REPO / "sandbox_escape_marker"), "/usr/escape_marker",
               "/escape_marker", "/tmp/srpo_escape_marker_" + secrets.token_hex(4)]
    r = box.run(WRITE_OUTSIDE.format(paths=targets))
    assert r.status == "ok", r
    for t in targets:
        assert not os.path.exists(t), t


def test_fork_bomb_is_contained(box):
    t = time.monotonic()
    r = box.run(FORK_BOMB)
    assert r.status == "timeout", r
    assert time.monotonic() - t < TEST_LIMITS.wall_seconds + 10
    if box.backend == "rlimits":
        uids, allowed = range(1_900_000_000, 1_900_000_256), 0
    else:
        uids, allowed = range(box.uid, box.uid + 1), 2 * len(box._idle)  # warm sandboxes: bwrap + supervisor
    for _ in range(50):  # killed processes may take a moment to be reaped
        if len(_procs_of_uids(uids)) <= allowed:
            break
        time.sleep(0.1)
    assert len(_procs_of_uids(uids)) <= allowed
    assert box.run("print(6 * 7)").stdout == "42\n"  # the runner still works


@pytest.mark.parametrize("source", [
    "x = bytearray(8 * 1024 ** 3)",  # at once
    "s = 'x'\nwhile True:\n    s += s",  # doubling
    "import mmap\nmaps = []\nwhile True:\n    maps.append(mmap.mmap(-1, 64 << 20))",  # address space, untouched
])
def test_memory_bomb(box, source):
    r = box.run(source)
    assert r.status == "memory_limit", r


def test_output_flood_is_capped(box):
    r = box.run("while True:\n    print('x' * 10000)")
    assert r.status == "output_limit", r
    assert len(r.stdout) <= TEST_LIMITS.output_bytes
    r = box.run("import sys\nwhile True:\n    sys.stderr.write('e' * 10000)")
    assert r.status == "output_limit", r


def test_background_processes_do_not_outlive_the_program(box):
    marker = f"3{secrets.randbelow(10 ** 6)}.25"
    t = time.monotonic()
    r = box.run(DAEMON.format(marker=marker))
    assert r.status == "ok" and r.stdout == "parent done\n", r
    assert time.monotonic() - t < 10.0  # not held up by the daemon (31+ s) keeping stdout open
    assert _procs_matching(f"sleep\0{marker}") == []


def test_ignoring_signals_still_times_out(box):
    r = box.run(IGNORE_TERM)
    assert r.status == "timeout", r


def test_sleeping_past_the_deadline(box):
    t = time.monotonic()
    r = box.run("import time\ntime.sleep(100)")
    assert r.status == "timeout" and r.cpu_seconds < 0.5, r
    assert TEST_LIMITS.wall_seconds <= time.monotonic() - t < TEST_LIMITS.wall_seconds + 6


def test_killing_the_parent_fails(box):
    r = box.run(KILL_PARENT)
    assert r.status == "ok" and r.stdout == "alive\n", r
    assert box.run("print('next')").stdout == "next\n"


def test_privileged_operations_are_denied(box):
    r = box.run(PRIVILEGED)
    assert r.status == "ok", r
    assert r.stdout == "shmget -1\nunshare -1\nptrace -1\ninet socket refused\n"


def test_filling_the_work_dir_fails_cleanly(sandbox):
    r = sandbox.run("with open('/tmp/big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))")
    assert r.status == "runtime_error" and ("No space left" in r.stderr or "File too large" in r.stderr), r


def test_warm_sandbox_forgets_previous_launches(bwrap_available):
    with Sandbox(TEST_LIMITS, backend="bwrap", reuse=10) as box:
        first = box.run("import os, subprocess\nopen('/tmp/left', 'w').write('x')\nopen('/dev/shm/left', 'w')"
                        ".write('x')\nsubprocess.Popen(['sleep', '30'])\nprint(os.listdir('/tmp'))")
        assert first.status == "ok" and "left" in first.stdout, first
        second = box.run("import os\nprint(sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), "
                         "len([p for p in os.listdir('/proc') if p.isdigit()]))")
        assert second.stdout == "[] [] 2\n", second  # only the supervisor (PID 1) and this program


@pytest.mark.parametrize("source, stdin, status, check", [
    ("print(input()[::-1])", "abc", "ok", lambda r: r.stdout == "cba\n"),
    ("raise ValueError('boom')", "", "runtime_error",
     lambda r: "ValueError: boom" in r.stderr and "supervisor" not in r.stderr),
    ("import sys\nsys.exit(3)", "", "runtime_error", lambda r: r.exit_code == 3),
    ("exit(0)", "", "ok", lambda r: r.exit_code == 0),  # site's exit() exists although python runs with -S
    ("print('unterminated", "", "runtime_error", lambda r: "SyntaxError" in r.stderr),
    ("x = 0\nwhile True:\n    x += 1", "", "timeout", lambda r: r.cpu_seconds >= 0.9 * TEST_LIMITS.cpu_seconds),
])
def test_statuses_of_ordinary_programs(box, source, stdin, status, check):
    r = box.run(source, stdin)
    assert r.status == status and check(r), r


def test_harness_reports_each_test(sandbox):
    source = "import sys\nn = int(sys.stdin.readline())\nprint(n * 2)\nif n == 3:\n    raise SystemExit(1)"
    tests = [HarnessTest("stdin", "1\n"), HarnessTest("stdin", "3\n"), HarnessTest("stdin", "x\n")]
    outcomes, error = sandbox.run_tests(source, tests)
    assert error == ""
    assert [o.status for o in outcomes] == ["ok", "runtime_error", "runtime_error"]
    assert outcomes[0].stdout == "2\n" and outcomes[1].stdout == "6\n"


def test_cli_prints_one_json_line(tmp_path, bwrap_available):
    prog = tmp_path / "prog.py"
    prog.write_text("import sys\nprint(sum(map(int, sys.stdin.read().split())))\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("1 2 3")
    out = subprocess.run([sys.executable, "-m", "srpo_mcore.rewards.sandbox", str(prog), "--stdin", str(stdin),
                          "--timeout", "2", "--memory-mb", "256"], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    lines = out.stdout.strip().split("\n")
    assert len(lines) == 1, out
    result = json.loads(lines[0])
    assert result["status"] == "ok" and result["stdout"] == "6\n" and result["exit_code"] == 0
    assert {"stderr", "cpu_seconds", "wall_seconds"} <= set(result)


def test_busy_programs_are_judged_by_cpu_time(bwrap_available):
    """A program needing 0.6 CPU s cannot finish within a 0.5 s wall limit on any machine: it passes because
    it is still computing at the deadline (wall time stretches, here up to 20x, for a loaded machine), while a
    sleeping program is stopped at the 0.5 s."""
    limits = dataclasses.replace(TEST_LIMITS, cpu_seconds=2.0, wall_seconds=0.5, wall_stretch=20.0)
    with Sandbox(limits, backend="bwrap") as box:
        busy = box.run("import time\nwhile time.process_time() < 0.6:\n    pass\nprint('done')")
        sleeper = box.run("import time\ntime.sleep(30)")
    assert busy.status == "ok" and busy.stdout == "done\n" and busy.wall_seconds > 0.5, busy
    assert sleeper.status == "timeout" and sleeper.wall_seconds < 0.5 + 1.5, sleeper


def test_fallback_launches_hold_distinct_uids(fallback_sandbox):
    """Concurrent fallback launches (threads here; trainer ranks alike) each run as their own uid."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as ex:
        uids = list(ex.map(lambda _: fallback_sandbox.run("import os, time\ntime.sleep(0.5)\nprint(os.getuid())"),
                           range(4)))
    assert all(r.status == "ok" for r in uids), uids
    assert len({r.stdout for r in uids}) == 4


def test_memory_of_all_processes_is_bounded(box):
    """RLIMIT_AS bounds each process; the supervisor also weighs all of them together, so processes x address
    space cannot exhaust the host (limit 512 MB here; 6 children x 200 MB would pass each per-process cap)."""
    forker = ("import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n        block = bytearray(200 << 20)\n"
              "        time.sleep(30)\n        os._exit(0)\ntime.sleep(30)\n")
    with Sandbox(dataclasses.replace(TEST_LIMITS, wall_seconds=15.0), backend=box.backend) as roomy:
        r = roomy.run(forker)  # a generous wall limit: only the memory check can stop it in time
    assert r.status == "memory_limit", r
    assert r.wall_seconds < 15.0, r
