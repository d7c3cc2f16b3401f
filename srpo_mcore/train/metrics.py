"""Step metrics: one JSON line per step (``metrics.jsonl``), TensorBoard scalars, on the console a progress bar
(a terminal only) or a plain summary line every ``logging.summary_interval`` steps (batch logs: no carriage
returns), and wall-clock time per phase. Only global rank 0 writes; every rank may call (others are no-ops)."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from srpo_mcore.config.train import LoggingConfig


class PhaseTimer:
    """``with timer("rollout"): ...`` accumulates seconds per phase for the current step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out, self.seconds = {f"time/{k}_s": v for k, v in self.seconds.items()}, {}
        return out


class MetricsLogger:
    def __init__(self, run_dir: str | Path, cfg: LoggingConfig, *, is_writer: bool, total_steps: int,
                 start_step: int = 0):
        self.is_writer = is_writer
        self.cfg = cfg
        self.total_steps = total_steps
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._bar = None
        if not is_writer:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step > 0 and self.path.exists():
            self._truncate_after(start_step)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)
        if cfg.progress_bar and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="srpo", unit="step", dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines of steps after the checkpoint (they will be re-run)."""
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_writer:
            return
        record = {"step": step, **{k: _plain(v) for k, v in sorted(metrics.items())}}
        if self.cfg.jsonl:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)  # an evaluation-only record at step 0 moves nothing
            shown = {k.split("/")[-1]: record[k] for k in ("reward/mean", "accuracy/mean", "response/length_mean")
                     if k in record}
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
        elif self.cfg.summary_interval and step > 0 and step % self.cfg.summary_interval == 0:
            self.message(summary_line(step, self.total_steps, record))

    def message(self, text: str) -> None:
        """A line on the console that does not break the progress bar."""
        if not self.is_writer:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def summary_line(step: int, total_steps: int, record: dict) -> str:
    """``step 20/200: reward 0.41, accuracy 0.38, length 17.2, 3.1 s/step`` (the fields the record has)."""
    fields = [(name, record.get(key)) for name, key in (("reward", "reward/mean"), ("accuracy", "accuracy/mean"),
                                                         ("length", "response/length_mean"))]
    parts = [f"{name} {value:.3g}" for name, value in fields if isinstance(value, int | float)]
    if isinstance(record.get("time/step_s"), int | float):
        parts.append(f"{record['time/step_s']:.3g} s/step")
    return f"step {step}/{total_steps}: " + ", ".join(parts)


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
