"""Everything that adapts CUDA-only code to a CPU-only machine lives here, and only here.

* :func:`configure_process_environment` sets process-wide variables before Triton, vLLM or Megatron are
  imported (Triton's interpreter when there is no GPU). Entry points and the test session call it first.
* :func:`adapt_megatron_for_cpu` makes Megatron-Core run on CPU with gloo. It is a no-op when CUDA exists. It is
  applied once, by ``srpo_mcore.distributed.init_model_parallel`` (the one function that creates the model-parallel
  state every Megatron object needs); ``model.qwen2.build_model``, where every Megatron model, DDP wrapper,
  optimizer and checkpoint starts, refuses to run before it (:func:`require_megatron_adapted`).
* :func:`has_cuda`, :func:`default_device`, :func:`release_cached_device_memory`: the CUDA checks the rest of the
  code asks here instead of calling ``torch.cuda`` (vLLM-CPU's own workarounds: ``rollout/vllm_cpu.py``).

How the Megatron adaptation works: Megatron-Core calls ``torch.cuda.*`` and passes ``device="cuda"`` in a
few dozen places (RoPE, TP mappings, the pipeline schedule, DDP streams, optimizer scalars, RNG tracker).
Rather than a global torch function mode (which would also slow every vLLM op in the same process), each
``megatron.core`` module's global name ``torch`` is rebound to :class:`_CpuTorch`, a thin proxy that forwards
everything to the real ``torch`` except ``torch.cuda`` (a CPU stand-in: device = cpu, streams and
synchronisation are no-ops, the "CUDA" RNG is a dedicated CPU generator) and tensor factories
(``device="cuda"`` becomes ``cpu``). vLLM and our own code keep the real ``torch``. Three functions that
compare ``Tensor.type()`` with ``torch.cuda.*`` strings or read CUDA generators are replaced by CPU versions, the
mixed-precision optimizers' constructors (bf16/fp16 params with fp32 main copies, the distributed optimizer) see
CPU tensors' ``Tensor.type()`` named as CUDA types while they sort parameters, and the one ``Tensor.cuda()``
call on the model-building path (tied embeddings under PP) is made a no-op while it runs.
Weights are initialised with ``use_cpu_initialization=True`` (see :func:`megatron_cpu_config_overrides`),
which also makes initial weights identical at every TP size.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from typing import Any

import torch

_REAL_TORCH = torch


def has_cuda() -> bool:
    """Whether this process runs on a CUDA GPU (else: CPU ranks, gloo, vLLM-CPU, Triton's interpreter)."""
    return torch.cuda.is_available()


def release_cached_device_memory() -> None:
    """Hand memory the CUDA caching allocator keeps back to the device (after freeing a model); no-op on CPU."""
    if has_cuda():
        torch.cuda.empty_cache()


def configure_process_environment() -> None:
    """Set the environment for this machine; call at the entry point before importing triton kernels."""
    if not has_cuda():
        # Triton kernels execute in its numpy interpreter on CPU tensors (fp32/fp16 only; see docs).
        os.environ.setdefault("TRITON_INTERPRET", "1")


def default_device() -> torch.device:
    """The device model tensors live on: the local GPU, or the CPU."""
    if has_cuda():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def megatron_cpu_config_overrides() -> dict[str, Any]:
    """TransformerConfig fields Megatron needs on CPU (empty on GPU)."""
    if has_cuda():
        return {}
    return {"use_cpu_initialization": True, "gradient_accumulation_fusion": False}


# ------------------------------------------------------------------------------------ the torch.cuda stand-in


class _NoopStream:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, other: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> Any:
        return _NoopEvent()

    def synchronize(self) -> None:
        pass


class _NoopEvent:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, stream: Any = None) -> None:
        pass

    def wait(self, stream: Any = None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


_CPU_CUDA_GENERATOR = torch.Generator()
_CPU_CUDA_GENERATOR.manual_seed(0)


def _rng_state(device: Any = None) -> torch.Tensor:
    return _CPU_CUDA_GENERATOR.get_state()


def _set_rng_state(state: torch.Tensor, device: Any = None) -> None:
    _CPU_CUDA_GENERATOR.set_state(state)


def _make_cuda_standin() -> types.SimpleNamespace:
    random_ns = types.SimpleNamespace(get_rng_state=_rng_state, set_rng_state=_set_rng_state)
    return types.SimpleNamespace(
        is_available=lambda: False,
        current_device=lambda: torch.device("cpu"),
        device_count=lambda: 0,
        set_device=lambda *a, **k: None,
        synchronize=lambda *a, **k: None,
        empty_cache=lambda: None,
        current_stream=lambda *a, **k: _NoopStream(),
        default_stream=lambda *a, **k: _NoopStream(),
        Stream=_NoopStream,
        Event=_NoopEvent,
        stream=lambda s=None: contextlib.nullcontext(),
        nvtx=types.SimpleNamespace(range_push=lambda *a, **k: None, range_pop=lambda *a, **k: None,
                                   range=lambda *a, **k: contextlib.nullcontext()),
        get_rng_state=_rng_state,
        set_rng_state=_set_rng_state,
        manual_seed=lambda seed: _CPU_CUDA_GENERATOR.manual_seed(int(seed)),
        manual_seed_all=lambda seed: _CPU_CUDA_GENERATOR.manual_seed(int(seed)),
        random=random_ns,
        default_generators=(_CPU_CUDA_GENERATOR,),
        memory_allocated=lambda *a, **k: 0,
        max_memory_allocated=lambda *a, **k: 0,
        memory_reserved=lambda *a, **k: 0,
        OutOfMemoryError=torch.cuda.OutOfMemoryError,
        CUDAGraph=torch.cuda.CUDAGraph,
        amp=torch.cuda.amp,
        get_device_capability=lambda *a, **k: (0, 0),
        get_device_name=lambda *a, **k: "cpu",
    )


def _cpu_device(device: Any) -> Any:
    if device is None:
        return None
    if isinstance(device, int) or (isinstance(device, str) and device.startswith("cuda")):
        return torch.device("cpu")
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


def _factory(fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        return fn(*args, **kwargs)

    call.__name__ = getattr(fn, "__name__", "factory")
    return call


_FACTORIES = ("empty", "zeros", "ones", "full", "tensor", "arange", "rand", "randn", "randint", "empty_like",
              "zeros_like", "ones_like", "full_like", "as_tensor", "linspace", "eye")


class _CpuTorch(types.ModuleType):
    """``torch`` as Megatron-Core modules see it on a CPU-only machine (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _make_cuda_standin()
        for name in _FACTORIES:
            setattr(self, name, _factory(getattr(_REAL_TORCH, name)))
        self.autocast = lambda device_type="cpu", *a, **k: _REAL_TORCH.autocast("cpu", *a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(_REAL_TORCH, name)


_CPU_TORCH: _CpuTorch | None = None


def _clip_grad_by_total_norm_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """CPU version of megatron.core.optimizer.clip_grads.clip_grad_by_total_norm_fp32."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        for param in parameters:
            grad = param.decoupled_grad if use_decoupled_grad else param.grad
            if grad is not None:
                grad.detach().mul_(clip_coeff)


def _get_cuda_rng_state_cpu(device=None, clone=False, graph_safe=False):
    return _CPU_CUDA_GENERATOR.get_state()


def _set_cuda_rng_state_cpu(new_state, device=-1, graph_safe=False):
    _CPU_CUDA_GENERATOR.set_state(new_state)


def _rebind_torch(module: types.ModuleType) -> None:
    if getattr(module, "torch", None) is _REAL_TORCH:
        setattr(module, "torch", _CPU_TORCH)  # noqa: B010 (a module attribute mypy cannot know)


class _MegatronImportHook(importlib.abc.MetaPathFinder):
    """Rebinds ``torch`` in ``megatron.core`` modules imported after the adaptation (Megatron imports many of
    its modules lazily, e.g. the checkpoint strategies at save time)."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("megatron.core"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module, _original=original_exec):
            _original(module)
            _rebind_torch(module)

        spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def _tensor_cuda_is_identity():
    """``Tensor.cuda()`` returns the tensor itself, for the duration (single-threaded set-up code only)."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


@contextlib.contextmanager
def _tensor_type_reports_cuda():
    """``Tensor.type()`` (no argument) of a CPU tensor names its CUDA twin (``torch.cuda.BFloat16Tensor``), for the
    duration (single-threaded set-up code only): Megatron's mixed-precision optimizers sort parameters into bf16/fp16
    (given fp32 main copies) and fp32 by comparing that string with ``torch.cuda.*`` names."""
    original = torch.Tensor.type

    def tensor_type(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None and not kwargs and self.device.type == "cpu":
            return original(self).replace("torch.", "torch.cuda.", 1)
        return original(self, dtype, non_blocking, **kwargs)

    torch.Tensor.type = tensor_type
    try:
        yield
    finally:
        torch.Tensor.type = original


def _cpu_optimizer_init(original):
    def __init__(self, *args, **kwargs):
        with _tensor_type_reports_cuda():
            original(self, *args, **kwargs)

    __init__.__wrapped__ = original
    return __init__


def _cpu_setup_embeddings(original):
    def setup_embeddings_and_output_layer(self, *args, **kwargs):
        # With tied embeddings under PP, Megatron moves the last stage's copy with ``weight.data.cuda()`` before
        # all-reducing it with the first stage's.
        with _tensor_cuda_is_identity():
            return original(self, *args, **kwargs)

    setup_embeddings_and_output_layer.__wrapped__ = original
    return setup_embeddings_and_output_layer


def megatron_adapted() -> bool:
    """Whether Megatron-Core can run here: on a GPU always, on CPU once :func:`adapt_megatron_for_cpu` ran."""
    return has_cuda() or _CPU_TORCH is not None


def require_megatron_adapted() -> None:
    """Raise unless :func:`megatron_adapted`: a Megatron object built before the adaptation would fail later with
    a CUDA error far from the cause."""
    if not megatron_adapted():
        raise RuntimeError("Megatron-Core objects are built after srpo_mcore.distributed.init_model_parallel(), which "
                           "creates the model-parallel state and adapts Megatron to this CPU-only machine")


def adapt_megatron_for_cpu() -> bool:
    """Make ``megatron.core`` run on CPU: rebind ``torch`` in every Megatron module already imported and in
    every one imported later, and replace three CUDA-only functions. Idempotent. Returns False (and does
    nothing) when CUDA exists. Called by ``srpo_mcore.distributed.init_model_parallel`` only."""
    global _CPU_TORCH
    if has_cuda():
        return False
    import megatron.core.optimizer.distrib_optimizer as mc_distrib
    import megatron.core.optimizer.optimizer as mc_optimizer
    import megatron.core.tensor_parallel.random as mc_random
    from megatron.core.models.common.language_module.language_module import LanguageModule

    if _CPU_TORCH is None:
        _CPU_TORCH = _CpuTorch()
        sys.meta_path.insert(0, _MegatronImportHook())
    for name, module in list(sys.modules.items()):
        if name.startswith("megatron.core") and module is not None:
            _rebind_torch(module)
    mc_optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu
    mc_random._get_cuda_rng_state = _get_cuda_rng_state_cpu
    mc_random._set_cuda_rng_state = _set_cuda_rng_state_cpu
    for optimizer_class in (mc_optimizer.Float16OptimizerWithFloat16Params, mc_distrib.DistributedOptimizer):
        if not hasattr(optimizer_class.__init__, "__wrapped__"):
            optimizer_class.__init__ = _cpu_optimizer_init(optimizer_class.__init__)
    if not hasattr(LanguageModule.setup_embeddings_and_output_layer, "__wrapped__"):
        LanguageModule.setup_embeddings_and_output_layer = _cpu_setup_embeddings(
            LanguageModule.setup_embeddings_and_output_layer)
    return True
