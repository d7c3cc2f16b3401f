"""The process environment vLLM needs inside a torchrun job: set in one place, scoped to the run directory.

:func:`configure_vllm_environment` is called once by the entry points (pretrain_srpo.py, the evaluation CLI, the
benchmark, test workers) before the rollout engine is built, never by library code. It sets, in this process only:

* ``VLLM_CACHE_ROOT``, ``VLLM_CONFIG_ROOT``, ``VLLM_RPC_BASE_PATH``: ``<run_dir>/vllm/{cache,config,rpc}``, so
  vLLM writes nothing into the home cache or the system temp directory;
* ``VLLM_NO_USAGE_STATS=1``, ``VLLM_DO_NOT_TRACK=1``: no usage reporting;
* ``VLLM_CONFIGURE_LOGGING=0`` unless set: vLLM installs no console handler of its own, so its records reach the job's
  handlers (the per-rank log files; the console only from ERROR up, see ``srpo_mcore.job.setup_logging``); one
  known-harmless warning is dropped (:class:`_RotaryReloadWarningFilter`);
* CPU build only (``platform.has_cuda()`` false): ``VLLM_CPU_OMP_THREADS_BIND``: this rank's share of the allowed cores (each local rank gets its
  own block when there are enough cores, else core ``local_rank % n_cores``), so the engines of one node do not
  fight over the same cores.

The KV-cache size is passed as an engine argument (``kv_cache_memory_bytes``), not through
``VLLM_CPU_KVCACHE_SPACE``.

It also removes stale shared-memory segments (:func:`remove_stale_shm_segments`): vLLM-CPU's TP communicator
segments (``/dev/shm/*cpushm*``) and the weight-sync staging area, when no live process maps them (a crashed run).
With stock vLLM-CPU those names depend on the group's ranks only, so leftovers made the next start fail
(``errno: 17``); our engine also makes them job-unique (cpu_worker.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from srpo_mcore import platform

logger = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
SHM_MARKER = "cpushm"  # vLLM-CPU's shared-memory communicator segments contain this in their name
SYNC_SHM_PREFIX = "srpo-wsync-"  # weight-sync staging (normally unlinked right after every rank mapped it)
_CONFIGURED_FOR: Path | None = None


def configure_vllm_environment(run_dir: str | Path) -> Path:
    """Point vLLM's files inside ``run_dir/vllm`` and bind this rank's CPU threads; return that directory.

    Idempotent for one run directory; call it before building a :class:`~srpo_mcore.rollout.engine.RolloutEngine`
    (which checks that it was called)."""
    global _CONFIGURED_FOR
    root = (Path(run_dir) / "vllm").resolve()
    for sub in ("cache", "config", "rpc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.environ["VLLM_CACHE_ROOT"] = str(root / "cache")
    os.environ["VLLM_CONFIG_ROOT"] = str(root / "config")
    os.environ["VLLM_RPC_BASE_PATH"] = str(rpc_dir(root))
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # its records go through the job's handlers
    os.environ["VLLM_NO_USAGE_STATS"] = "1"
    os.environ["VLLM_DO_NOT_TRACK"] = "1"
    layerwise = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _RotaryReloadWarningFilter) for f in layerwise.filters):
        layerwise.addFilter(_RotaryReloadWarningFilter())
    if not platform.has_cuda():
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind_for_local_rank()
        remove_stale_shm_segments()
    _CONFIGURED_FOR = root
    return root


class _RotaryReloadWarningFilter(logging.Filter):
    """vLLM's layer-wise ``reload_weights`` warns "RotaryEmbedding: Failed to load weights" for every push that does
    not carry the rotary layer's cos/sin cache, which no checkpoint carries (vLLM computes it and puts it back);
    on every rank at every sync that is two console lines a step. Other layers' warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args == ("RotaryEmbedding",))


# vLLM binds Unix sockets at ``VLLM_RPC_BASE_PATH/<uuid4>`` (36 characters); a socket path may not exceed 107
# bytes (sizeof(sockaddr_un.sun_path) - 1).
_MAX_RPC_BASE = 107 - 37


def rpc_dir(root: Path) -> Path:
    """``root/rpc`` when its sockets' paths fit the Unix limit, else a short private directory under the system
    temp dir named after the run (recorded in ``root/rpc.path``); a deep run directory must not break start-up."""
    preferred = root / "rpc"
    if len(str(preferred)) <= _MAX_RPC_BASE:
        return preferred
    import hashlib
    import tempfile

    short = Path(tempfile.gettempdir()) / f"srpo-rpc-{hashlib.blake2b(str(root).encode(), digest_size=6).hexdigest()}"
    short.mkdir(mode=0o700, exist_ok=True)
    (root / "rpc.path").write_text(f"{short}\n")
    logger.info("run directory too deep for vLLM's IPC sockets (%d > %d characters); using %s", len(str(preferred)),
                _MAX_RPC_BASE, short)
    return short


def configured_root() -> Path | None:
    """The ``run_dir/vllm`` directory :func:`configure_vllm_environment` set up in this process, if any."""
    return _CONFIGURED_FOR


def cpu_bind_for_local_rank() -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` value for this rank: a block of ``cores // local_world`` allowed cores, or one
    core shared round-robin when there are more local ranks than cores."""
    cores = sorted(os.sched_getaffinity(0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    per_rank = len(cores) // max(local_world, 1)
    if per_rank <= 1:
        return str(cores[local_rank % len(cores)])
    block = cores[local_rank * per_rank:(local_rank + 1) * per_rank]
    return ",".join(map(str, block))


# ------------------------------------------------------------------------------------ shared-memory segments


def _mapped_shm_names(pid: str) -> set[str]:
    names = set()
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                if "/dev/shm/" in line and (SHM_MARKER in line or SYNC_SHM_PREFIX in line):
                    names.add(line.split("/dev/shm/", 1)[1].strip().removesuffix(" (deleted)"))
    except OSError:  # the process ended, or its maps are not ours to read
        pass
    return names


def shm_segments_in_use() -> dict[str, list[int]]:
    """vLLM-CPU segment name -> pids of live processes that map it (those whose maps this user can read)."""
    users: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in _mapped_shm_names(pid):
            users.setdefault(name, []).append(int(pid))
    return users


def remove_stale_shm_segments() -> list[str]:
    """Remove this user's vLLM-CPU (and weight-sync staging) segments that no live process maps (left by a
    crashed run); return their names. Segments in use by another job are left alone (vLLM maps a segment right after creating it, so the
    window in which a fresh segment looks unused is a few microseconds)."""
    if not SHM_DIR.is_dir():
        return []
    candidates = [p for p in SHM_DIR.iterdir()
                  if (SHM_MARKER in p.name or p.name.startswith(SYNC_SHM_PREFIX)) and p.stat().st_uid == os.getuid()]
    if not candidates:
        return []
    in_use = shm_segments_in_use()
    removed = []
    for path in candidates:
        if path.name not in in_use:
            try:
                path.unlink()
                removed.append(path.name)
            except FileNotFoundError:  # another rank of this job removed it first
                pass
    if removed:
        logger.warning("removed %d stale vLLM-CPU shared-memory segment(s) from a previous run: %s", len(removed),
                       ", ".join(sorted(removed)))
    return removed


def unlink_own_shm_segments() -> None:
    """Unlink the vLLM-CPU segments this process maps (after its engine shut down), so a new engine over the same
    ranks can create them again. Existing mappings stay valid until vLLM releases them."""
    for name in _mapped_shm_names("self"):
        if SHM_MARKER not in name:
            continue
        try:
            (SHM_DIR / name).unlink()
        except FileNotFoundError:
            pass
