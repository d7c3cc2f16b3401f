"""Our SRPO trainer vs TRL's GRPOTrainer on the quickstart's stage-1 task (math only): same base model, prompts,
reward, batch and optimizer settings, same number of steps; median seconds per step, phase times, and held-out
pass@1 at the same steps over several evaluation seeds, from one evaluator.

    python -m benchmarks.trl_side_by_side --out runs/trl_vs_srpo --base runs/quickstart/base --data runs/quickstart/data
    python -m benchmarks.trl_side_by_side ... parallel.tensor_model_parallel_size=1 rollout.tensor_parallel_size=1
    python -m benchmarks.trl_side_by_side --out runs/trl_vs_srpo --report-only     # re-read finished runs

The sides run one after the other, never together:

* ours: ``pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml`` with the stage-1 overrides (settings.py),
  then the extra positional overrides (they change the one resolved config both sides are mapped from: a layout
  changes only our side, an optimizer or batch setting both); checkpoints at the evaluation steps, no in-run evaluation; times from
  ``OUT/ours/run/metrics.jsonl`` (``time/iteration_s``: the loop iteration's wall clock, as TRL's is).
* TRL: ``trl_side.py`` in a venv of its own (``--venv``, built once from requirements-trl.txt; never a project
  dependency) with the ``GRPOConfig`` mapped from the same resolved config; ``--threads`` torch threads in one
  process; times from ``OUT/trl/steps.jsonl`` (wall seconds per optimizer step).
* evaluation: ``python -m srpo_mcore.eval`` on every side's checkpoint at steps 0 (the base, shared), ``--eval-every``,
  ..., ``--steps``: ``--eval-seeds`` seeds x ``--eval-k`` samples per held-out problem, the same ``--config`` and
  layout for every checkpoint.

Writes ``OUT/side_by_side.md`` and ``.json``. A missing base model or data file fails before anything starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.trl_side_by_side import report
from benchmarks.trl_side_by_side.settings import MappingError, settings_table, stage1_overrides, trl_arguments

REPO_ROOT = Path(__file__).resolve().parents[2]
NPROC = 2  # our side's ranks, and the evaluator's


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.trl_side_by_side", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/trl_vs_srpo")
    ap.add_argument("--base", default="runs/quickstart/base", help="HF base model with tokenizer (make quickstart's)")
    ap.add_argument("--data", default="runs/quickstart/data", help="directory with train.jsonl and heldout.jsonl")
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--eval-every", type=int, default=40, help="checkpoint and evaluate every N steps (and step 0)")
    ap.add_argument("--eval-seeds", type=int, default=5)
    ap.add_argument("--eval-k", type=int, default=4, help="samples per held-out problem per seed")
    ap.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE",
                    help="evaluator config override, the same for every checkpoint (repeatable)")
    ap.add_argument("--sides", default="ours,trl", help="comma-separated: ours, trl")
    ap.add_argument("--venv", default="runs/trl-venv", help="TRL's venv (built when missing or stale)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the one TRL process")
    ap.add_argument("--warmup-steps", type=int, default=1, help="first steps left out of the step-time statistics")
    ap.add_argument("--report-only", action="store_true", help="only re-read OUT and rewrite the report")
    ap.add_argument("overrides", nargs="*", help="config overrides of the resolved config both sides come from (e.g. our layout)")
    args = ap.parse_args(argv)
    args.sides = [s for s in args.sides.split(",") if s]
    return args


def preflight(args: argparse.Namespace) -> None:
    """Everything cheap that can be wrong, as one clear error, before any run starts."""
    unknown = set(args.sides) - set(report.SIDES)
    if unknown or not args.sides:
        raise ValueError(f"--sides {','.join(args.sides)}: expected some of {','.join(report.SIDES)}")
    base, data = Path(args.base), Path(args.data)
    if not (base / "config.json").is_file() or not (base / "tokenizer.json").is_file():
        raise ValueError(f"--base {base}: not an HF model directory with config.json and tokenizer.json "
                         "(make quickstart writes runs/quickstart/base)")
    for name in ("train.jsonl", "heldout.jsonl"):
        if not (data / name).is_file():
            raise ValueError(f"--data {data}: {name} missing (make quickstart writes runs/quickstart/data)")
    if not Path(args.config).is_file():
        raise ValueError(f"--config {args.config}: no such file")
    if args.eval_every <= 0 or args.steps <= 0 or args.steps % args.eval_every:
        raise ValueError(f"--steps {args.steps} must be a positive multiple of --eval-every {args.eval_every}")
    if args.eval_seeds < 1 or args.eval_k < 1 or args.threads < 1 or not 0 <= args.warmup_steps < args.steps:
        raise ValueError("--eval-seeds, --eval-k and --threads must be >= 1, --warmup-steps in [0, --steps)")


def eval_steps(steps: int, eval_every: int) -> list[int]:
    return list(range(0, steps + 1, eval_every))


def load_our_config(args: argparse.Namespace, out: Path):
    from srpo_mcore.config import load_config

    overrides = stage1_overrides(data=Path(args.data).resolve(), base=Path(args.base).resolve(),
                                 run_dir=out / "ours" / "run", steps=args.steps, eval_every=args.eval_every)
    return load_config(args.config, overrides + args.overrides), overrides + args.overrides


def write_prompts(cfg, base: Path, path: Path) -> int:
    """Our prompt table (template, BOS, length filter) as TRL's rows: the text TRL tokenizes to our ids."""
    from transformers import AutoTokenizer

    from srpo_mcore.tasks.prompts import PromptTable

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    table = PromptTable.load(cfg, tokenizer, files={"math": cfg.data.math_train_files})
    bos = tokenizer.bos_token if tokenizer.bos_token_id is not None else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for p in table.prompts:
            f.write(json.dumps({"id": p.record.id, "prompt": bos + p.text, "prompt_ids": list(p.token_ids),
                                "answer": p.ground_truth, "problem": p.record.problem}) + "\n")
    return len(table.prompts)


def run_ours(args, out: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, "pretrain_srpo.py", "--nproc", str(NPROC), "--config", str(Path(args.config).resolve()),
           *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True)


def run_trl(args, out: Path, cfg, python: Path) -> None:
    trl_dir = out / "trl"
    n = write_prompts(cfg, Path(args.base), trl_dir / "prompts.jsonl")
    job = {"grpo": trl_arguments(cfg, steps=args.steps, eval_every=args.eval_every),
           "rewards": dataclasses.asdict(cfg.rewards), "base": str(Path(args.base).resolve()),
           "prompts": str(trl_dir / "prompts.jsonl"), "threads": args.threads, "out": str(trl_dir)}
    (trl_dir / "job.json").write_text(json.dumps(job, indent=1))
    cmd = [str(python), str(Path(__file__).with_name("trl_side.py")), "--job", str(trl_dir / "job.json")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(trl_dir / "hf_home"), "TOKENIZERS_PARALLELISM": "false"}
    print(f"TRL side: {n} prompts;", "$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True)


def checkpoint_args(side: str, step: int, out: Path, base: Path) -> list[str]:
    if step == 0:
        return ["--hf", str(base)]
    if side == "ours":
        return ["--mcore", str(out / "ours" / "run" / "checkpoints" / f"step_{step:06d}")]
    return ["--hf", str(out / "trl" / f"checkpoint-{step}")]


def eval_dir(out: Path, side: str, step: int, seed: int) -> Path:
    return out / "eval" / ("base" if step == 0 else side) / f"step{step}" / f"seed{seed}"


def evaluate(args, out: Path, side: str, step: int) -> None:
    """One evaluator, one config and layout for every checkpoint; step 0 (the base) is evaluated once."""
    for seed in range(1, args.eval_seeds + 1):
        target = eval_dir(out, side, step, seed)
        if step == 0 and (target / "summary.json").is_file():
            continue  # the base, already evaluated for the other side in this invocation (clear_previous)
        cmd = [sys.executable, "-m", "srpo_mcore.eval", *checkpoint_args(side, step, out, Path(args.base).resolve()),
               "--data", str(Path(args.data).resolve() / "heldout.jsonl"), "--k", str(args.eval_k),
               "--seed", str(seed), "--config", str(Path(args.config).resolve()), "--nproc", str(NPROC),
               "--out", str(target), *[f"--set={s}" for s in args.eval_set]]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)


def step_records(out: Path, side: str) -> list[dict]:
    path = out / "ours" / "run" / "metrics.jsonl" if side == "ours" else out / "trl" / "steps.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: missing; run the {side} side first (without --report-only)")
    rows = report.read_jsonl(path)
    if side == "ours":  # time the same span as TRL's on_step_begin..on_step_end: the iteration's wall clock
        for r in rows:
            if "time/iteration_s" in r:
                r["time/phases_s"] = r.pop("time/step_s")  # the sum of the timed phases
                r["time/step_s"] = r.pop("time/iteration_s")
    return rows


def collect(args, out: Path, cfg, machine: dict, command: list[str]) -> dict:
    steps = eval_steps(args.steps, args.eval_every)
    sides = [s for s in report.SIDES if s in args.sides]
    trl = trl_arguments(cfg, steps=args.steps, eval_every=args.eval_every)
    return {
        "command": command, "steps_run": args.steps, "warmup_steps": args.warmup_steps, "eval_steps": steps,
        "eval": {"seeds": args.eval_seeds, "k": args.eval_k, "config": args.config, "set": args.eval_set},
        "steps": {s: report.step_stats(step_records(out, s), args.warmup_steps) for s in sides},
        "pass@1": {s: {str(step): report.pass_at_1([eval_dir(out, s, step, seed) / "summary.json"
                                                   for seed in range(1, args.eval_seeds + 1)]) for step in steps}
                   for s in sides},
        "settings": settings_table(cfg, trl, threads=args.threads, nproc=NPROC),
        "trl_grpo_config": trl, "our_overrides": args.overrides, "machine": machine,
    }


def clear_previous(out: Path, sides: list[str]) -> None:
    """Every side run starts fresh (our trainer would resume from a checkpoint left in its run directory); the
    base model's evaluation is redone once per invocation; a side not run keeps its results for the report."""
    stale = [out / "eval" / "base"]
    for side in sides:
        stale += [out / "eval" / side, out / "ours" / "run" if side == "ours" else out / "trl"]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_sides(args, out: Path, cfg, overrides: list[str], machine: dict) -> None:
    """Each side's training run, then its checkpoints' evaluations; one side after the other, never together."""
    sides = [s for s in report.SIDES if s in args.sides]
    clear_previous(out, sides)
    trl_python = None
    if "trl" in sides:  # built (or checked) before anything is timed
        from benchmarks.trl_side_by_side.venv import ensure_venv

        trl_python = ensure_venv(Path(args.venv).resolve())
    for side in sides:
        machine["load_before"][side] = list(os.getloadavg())
        machine["uptime"][f"{side} before"] = uptime()
        start = time.time()
        run_ours(args, out, overrides) if side == "ours" else run_trl(args, out, cfg, trl_python)
        machine["load_after"][side] = list(os.getloadavg())
        machine["uptime"][f"{side} after"] = uptime()
        machine[f"{side}_run_s"] = round(time.time() - start, 1)
        (out / "machine.json").write_text(json.dumps(machine, indent=1))
        for step in eval_steps(args.steps, args.eval_every):
            evaluate(args, out, side, step)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = Path(args.out).resolve()
    try:
        preflight(args)
        cfg, overrides = load_our_config(args, out)
        trl_arguments(cfg, steps=args.steps, eval_every=args.eval_every)  # refuse unmappable settings up front
    except (ValueError, OSError, MappingError) as e:  # ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    machine_file = out / "machine.json"  # kept across invocations: a side not rerun keeps its figures
    machine = (json.loads(machine_file.read_text()) if machine_file.is_file()
               else {"nproc": os.cpu_count(), "load_before": {}, "load_after": {}, "uptime": {}})
    if not args.report_only:
        run_sides(args, out, cfg, overrides, machine)
    text = report.write(out, collect(args, out, cfg, machine, ["python", "-m", "benchmarks.trl_side_by_side", *argv]))
    print(text)
    return 0
