"""Launch a worker script under ``torchrun`` (gloo, CPU) from a test and return its output.

Multi-rank tests keep their rank code in ``tests/**/workers/*.py`` scripts; the pytest side launches them
with :func:`run_torchrun` and asserts on what rank 0 prints (or writes to ``--out``). One launch should cover
as many checks as possible: each interpreter start costs seconds on 2 cores.

:func:`run_isolated` runs any command in its own session with its output in files, and kills the whole session
when the command ends or times out: a rank killed on purpose (crash tests) can leave helper processes behind
(checkpoint writers, resource trackers) that would otherwise hold a pipe open and hang the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from srpo_mcore.distributed import free_local_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def torchrun_command(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
            "--master_addr=127.0.0.1", f"--master_port={free_local_port()}", *args]


def _kill_tagged(tag: str) -> None:
    """SIGKILL every process whose environment carries ``SRPO_TEST_RUN=tag`` (descendants that left the session,
    e.g. a checkpoint writer spawned by a rank that was then killed)."""
    needle = f"SRPO_TEST_RUN={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def run_isolated(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None,
                 cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    tag = uuid.uuid4().hex
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {}), "SRPO_TEST_RUN": tag}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=err, text=True,
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            _kill_tagged(tag)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if returncode is None:
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(cmd, returncode, stdout, stderr)


def run_torchrun(
    script: str | Path,
    nproc: int,
    *args: str,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node=nproc script args`` on this machine; fail the test on a non-zero exit."""
    proc = run_isolated(torchrun_command(nproc, str(script), *args), timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"torchrun {Path(script).name} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc
