"""Device placement on the trainer's path, checked without a GPU.

Under torch's ``FakeTensorMode`` tensors are fake (shapes only) and any op that mixes two devices raises
``FakeTensorDeviceMismatchError``, as on a GPU. The stand-in accelerator is the ``meta`` device: fake ``cuda``
tensors exist on a CPU-only torch build, but slicing, boolean masks and autograd on them fail or abort the process
("PyTorch is not linked with support for cuda devices"), while fake ``meta`` tensors support all three (boolean masks
through the ShapeEnv). Code that places tensors with ``device=`` / ``.to(device)`` of the model's device is
device-agnostic, so what holds for meta holds for cuda. The micro-batch builder, both kernel backends' log-prob and
GRPO-loss Python paths (Triton: up to each kernel launch, replaced by a probe that checks its tensors' devices) and
Policy's log-prob / loss closures run on fake accelerator logits; a micro-batch left on the CPU fails in the loss and
is refused by the schedule wrapper.
"""

from types import SimpleNamespace

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from srpo_mcore.model.forward import MicroBatch, forward_backward
from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train import policy as policy_module
from srpo_mcore.train.batch import build_micro_batches

DEVICE = torch.device("meta")  # the model's device (see the module docstring)
VOCAB = 32


def _samples() -> list[ScoredSample]:
    out = []
    for i, (prompt, response) in enumerate([(3, 4), (2, 6), (5, 1)]):
        out.append(ScoredSample(group=i // 2, prompt_id=str(i), domain="math", prompt_ids=list(range(1, prompt + 1)),
                                response_ids=torch.arange(response, dtype=torch.int32) + 7,  # like the engine's views
                                rollout_logprobs=torch.full((response,), -0.5), finish_reason="stop",
                                advantage=1.0 - i))
    return out


def _device_micro_batches() -> list[MicroBatch]:
    samples = _samples()
    return build_micro_batches(samples, [[0, 1], [2], []], pad_id=0, uniform_shape=False, device=DEVICE,
                               per_token={"old_logprobs": [[-0.4] * len(s.response_ids) for s in samples]})


def _tensors(mb: MicroBatch) -> dict[str, torch.Tensor]:
    return {"input_ids": mb.input_ids, **{k: v for k, v in mb.extras.items() if isinstance(v, torch.Tensor)}}


@pytest.fixture
def fake_device():
    # allow_non_fake_inputs: the samples' real CPU tensors (rollout views) are read by the builder, as in a run
    with FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv()) as mode:
        yield mode


class _KernelLaunchProbe:
    """Stands in for a ``@triton.jit`` kernel: ``kernel[grid](*args)`` records the devices of its tensor arguments
    and, like a launch on a GPU, fails when they are not all on one device."""

    def __init__(self, name: str, launches: list):
        self.name, self.launches = name, launches

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            devices = {a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)}
            self.launches.append((self.name, devices))
            if len(devices) != 1:
                raise RuntimeError(f"{self.name} launched with tensors on {sorted(map(str, devices))}")
        return launch


@pytest.fixture(params=["torch", "triton"])
def backend(request, monkeypatch):
    """A kernel backend whose Python path runs on fake tensors; for triton the launches are probes."""
    launches: list = []
    if request.param == "triton":
        import srpo_kernels.fused_linear_logprobs as triton_fused
        import srpo_kernels.grpo_loss as triton_loss
        import srpo_kernels.logprobs as triton_logprobs

        # the fused LM head launches the log-prob module's kernels (probed there) on its logits chunks
        for module in (triton_logprobs, triton_loss, triton_fused):  # its CUDA-or-interpreter check; the probes launch nothing
            monkeypatch.setattr(module, "check_triton_device", lambda t, kernel: None)
        for module, names in ((triton_logprobs, ("_partials_kernel", "_combine_kernel", "_grad_kernel")),
                              (triton_loss, ("_grpo_token_kernel",))):
            for name in names:
                monkeypatch.setattr(module, name, _KernelLaunchProbe(name, launches))
    yield request.param, launches
    if request.param == "triton" and launches:
        assert all(devices == {DEVICE} for _, devices in launches), launches


def test_builder_puts_every_micro_batch_tensor_on_the_device(fake_device):
    mbs = _device_micro_batches()
    assert len(mbs) == 3
    for mb in mbs:
        assert {name: t.device for name, t in _tensors(mb).items()} == {name: DEVICE for name in _tensors(mb)}
        assert mb.device == DEVICE


def test_builder_default_stays_on_cpu():
    mb = build_micro_batches(_samples(), [[0]], pad_id=0, uniform_shape=False)[0]
    assert {t.device.type for t in _tensors(mb).values()} == {"cpu"}


def test_logprobs_and_loss_ops_with_device_logits(fake_device, backend):
    from srpo_kernels.backends import get_op
    from srpo_kernels.grpo_loss_reference import GRPOLossConfig

    name, launches = backend
    for mb in _device_micro_batches():
        b, s = mb.shape
        x = mb.extras
        logits = torch.randn(b * s, VOCAB, device=DEVICE, requires_grad=True)
        logp, ent = get_op("logprobs", name)(logits, x["targets"].reshape(-1), vocab_size=VOCAB - 3,
                                             compute_entropy=True)
        assert logp.device == DEVICE and ent.device == DEVICE
        config = GRPOLossConfig(kl_coef=0.1, tis_cap=2.0, loss_agg_mode="seq-mean-token-mean", entropy_coef=0.01)
        loss, metrics = get_op("grpo_loss", name)(
            logits, x["targets"].reshape(-1), x["old_logprobs"].reshape(-1), x["advantages"].reshape(-1),
            x["loss_mask"].reshape(-1), config=config, ref_logp=x["old_logprobs"].reshape(-1),
            rollout_logp=x["rollout_logprobs"].reshape(-1),
            seq_ids=torch.arange(b, device=DEVICE).repeat_interleave(s), num_global_tokens=1.0, num_global_seqs=1.0,
            vocab_size=VOCAB - 3, compute_entropy=True)
        loss.backward()
        assert loss.device == DEVICE and logits.grad.device == DEVICE
        assert {m.device for m in metrics.values()} == {DEVICE}
    assert name == "torch" or {k for k, _ in launches} == {"_partials_kernel", "_combine_kernel", "_grad_kernel",
                                                            "_grpo_token_kernel"}


def test_cpu_targets_with_device_logits_fail_as_on_a_gpu(fake_device, backend):
    """The bug class these tests guard against: CPU-built micro-batches against DEVICE logits."""
    from srpo_kernels.backends import get_op

    mb = build_micro_batches(_samples(), [[0, 1]], pad_id=0, uniform_shape=False)[0]
    logits = torch.randn(mb.input_ids.numel(), VOCAB, device=DEVICE)
    with pytest.raises((FakeTensorDeviceMismatchError, RuntimeError), match="device|launched with tensors on"):
        get_op("logprobs", backend[0])(logits, mb.extras["targets"].reshape(-1), vocab_size=VOCAB)
    backend[1].clear()  # the refused launch was the point


def test_schedule_wrapper_refuses_micro_batches_off_the_model_device():
    model = torch.nn.Linear(2, 2, device="meta")
    mb = MicroBatch(torch.zeros(1, 4, dtype=torch.long), {})
    with pytest.raises(ValueError, match="micro-batch 0 is on cpu but the model is on meta"):
        forward_backward(model, [mb], lambda logits, mb: None, forward_only=True)


# ------------------------------------------------------------------------------------ Policy's loss closures


class _Stub:
    param_groups = [{"lr": 1e-6}]

    def __getattr__(self, name):
        return lambda *a, **k: None

    def step(self):
        return True, None, None


def _policy(backend: str, loss_aggregation: str, fused: bool) -> policy_module.Policy:
    """A Policy without a Megatron model: only what its log-prob and loss closures read."""
    from srpo_kernels.grpo_loss_reference import GRPOLossConfig

    from srpo_mcore.train.loss import TokenLoss

    policy = object.__new__(policy_module.Policy)
    policy.cfg = SimpleNamespace(model=SimpleNamespace(vocab_size=VOCAB - 3), rollout=SimpleNamespace(temperature=0.9),
                                 algorithm=SimpleNamespace(loss_aggregation=loss_aggregation))
    policy.state = SimpleNamespace(device=DEVICE, tp_size=1, tp_rank=0, tp_group=None, is_last_stage=True)
    policy.token_loss = TokenLoss(fused=fused, backend=backend,
                                  loss_config=GRPOLossConfig(loss_agg_mode=loss_aggregation, tis_cap=2.0),
                                  vocab_size=VOCAB - 3, temperature=0.9)
    policy.reference, policy.ddp, policy.optimizer, policy.lr_scheduler = None, _Stub(), _Stub(), _Stub()
    return policy


HIDDEN = 8


def _fake_schedule(returned: list):
    """forward_backward's contract on one stage: per micro-batch, DEVICE logits [b, s, V] (head="logits") or the
    fused LM head's input (hidden states [s, b, h] and the output weight [V, h], head="hidden") into the closure."""
    from srpo_mcore.model.forward import LMHeadInput

    def run(model, micro_batches, loss_fn, *, forward_only, head="logits"):
        for mb in micro_batches:
            b, s = mb.shape
            grad = not forward_only
            if head == "hidden":
                out = LMHeadInput(torch.randn(s, b, HIDDEN, device=DEVICE, requires_grad=grad),
                                  torch.randn(VOCAB, HIDDEN, device=DEVICE, requires_grad=grad), reduce_grad_input=True)
            else:
                out = torch.randn(b, s, VOCAB, device=DEVICE, requires_grad=grad)
            loss, count, _ = loss_fn(out, mb)
            returned.append((loss.device, count.device))
            if not forward_only:
                loss.backward()
        return []
    return run


@pytest.mark.parametrize("fused", [True, False], ids=["fused-head", "logits"])
@pytest.mark.parametrize("loss_aggregation", ["token-mean", "seq-mean-token-mean"])
def test_policy_logprob_and_loss_closures_on_device(fake_device, backend, monkeypatch, loss_aggregation, fused):
    returned, reduced = [], {}
    monkeypatch.setattr(policy_module, "forward_backward", _fake_schedule(returned))
    policy = _policy(backend[0], loss_aggregation, fused)
    monkeypatch.setattr(policy, "_reduce_to_all", lambda values: reduced.update(values) or dict.fromkeys(values, 0.0))
    mbs = [mb for mb in _device_micro_batches()]
    rollout, trainer = policy.compute_logprobs(mbs)
    assert rollout.device == DEVICE and trainer.device == DEVICE
    assert all(mb.extras["old_logprobs"].device == DEVICE for mb in mbs)
    policy.train_step(mbs, global_tokens=10.0, global_sequences=3.0)
    assert returned and set(returned) == {(DEVICE, DEVICE)}
    # the step's sums stay on the device until the one all-reduce; every term the config computes is summed
    assert set(reduced) == {"loss", *policy.loss_metrics} and "tis_clip_frac" in reduced
    assert all(isinstance(v, torch.Tensor) and v.device == DEVICE for v in reduced.values())
