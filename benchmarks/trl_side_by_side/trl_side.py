"""TRL's side of the benchmark: ``GRPOTrainer`` on the prompts the parent rendered, scored by our RewardManager.

Runs inside the TRL venv (never in the project's environment), started by ``benchmarks.trl_side_by_side``:

    runs/trl-venv/bin/python benchmarks/trl_side_by_side/trl_side.py --job OUT/trl/job.json

``job.json`` holds the ``GRPOConfig`` arguments (settings.py), the reward config, the base model, the prompt file
(rows with the prompt text as TRL must see it and the token ids our trainer uses; every row is checked to tokenize to
the same ids), the thread count and the output directory. Writes ``OUT/trl/steps.jsonl`` (one row per optimizer step:
wall seconds from the step's start to its end and the phases inside), ``OUT/trl/log.jsonl`` (TRL's own logs) and
``checkpoint-N`` HF checkpoints at the save steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # srpo_mcore.rewards, the reward our trainer uses


def check_prompt_tokens(tokenizer, rows: list[dict]) -> None:
    """TRL tokenizes the prompt text itself: it must give the ids our trainer generates from."""
    for row in rows:
        ids = tokenizer(text=row["prompt"])["input_ids"]
        if list(ids) != list(row["prompt_ids"]):
            raise SystemExit(f"error: prompt {row['id']!r}: TRL's tokenization {ids} differs from ours "
                             f"{row['prompt_ids']}")


def build_trainer(job: dict):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from srpo_mcore.config.rewards import RewardConfig
    from srpo_mcore.rewards import RewardManager, RewardRequest

    torch.set_num_threads(job["threads"])
    out = Path(job["out"])
    rows = [json.loads(line) for line in Path(job["prompts"]).read_text().splitlines() if line]
    tokenizer = AutoTokenizer.from_pretrained(job["base"])
    check_prompt_tokens(tokenizer, rows)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"], "problem": r["problem"]}
                                 for r in rows])
    rewards = RewardManager(RewardConfig(**job["rewards"]), domains=("math",))

    def srpo_reward(prompts, completions, answer, problem, **_):
        results = rewards.score([RewardRequest("math", text, gold, prompt=question)
                                 for text, gold, question in zip(completions, answer, problem, strict=True)])
        return [r.reward for r in results]

    phases: dict[str, float] = {}

    def timed(name, method):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    class StepTimes(TrainerCallback):
        """Wall seconds of each optimizer step (begin -> end: generation, reward, forward/backward, AdamW; the
        checkpoint save comes after ``on_step_end``) and the phases measured inside it."""

        def __init__(self):
            self.start = 0.0
            self.file = (out / "steps.jsonl").open("w")
            self.log_file = (out / "log.jsonl").open("w")

        def on_step_begin(self, args, state, control, **kwargs):
            phases.clear()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_s = time.perf_counter() - self.start
            gen_score = phases.get("generate_and_score", 0.0)
            record = {"step": state.global_step, "time/step_s": step_s,
                      "time/generate_s": phases.get("generate", 0.0), "time/reward_s": phases.get("reward", 0.0),
                      "time/score_other_s": gen_score - phases.get("generate", 0.0) - phases.get("reward", 0.0),
                      "time/train_s": step_s - gen_score}
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.log_file.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")
            self.log_file.flush()

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._generate = timed("generate", self._generate)
            self._calculate_rewards = timed("reward", self._calculate_rewards)
            self._generate_and_score_completions = timed("generate_and_score", self._generate_and_score_completions)

    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, logging_steps=1, report_to="none",
                      disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
                      log_completions=False, **job["grpo"])
    model = AutoModelForCausalLM.from_pretrained(job["base"], dtype=torch.float32)
    trainer = TimedGRPOTrainer(model=model, reward_funcs=srpo_reward, args=args, train_dataset=dataset,
                               processing_class=tokenizer, callbacks=[StepTimes()])
    return trainer, rewards


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", required=True, help="job.json written by benchmarks.trl_side_by_side")
    job = json.loads(Path(ap.parse_args(argv).job).read_text())
    import trl

    print(f"trl {trl.__version__}", flush=True)
    trainer, rewards = build_trainer(job)
    try:
        trainer.train()
    finally:
        rewards.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
