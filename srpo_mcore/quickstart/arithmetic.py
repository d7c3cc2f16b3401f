"""The CPU quickstart's task: integer arithmetic in two domains, with a character-level tokenizer.

* math: ``37+48=``, answered ``<think>37+48</think>\\boxed{85}``, graded by the math reward;
* code: ``py:37+48=``, answered ``<think>37+48</think>`` then a python code block ``print(85)``, graded by the
  code reward: the program runs in the sandbox and its stdout must be ``85``.

The formats follow the R1-Zero templates the real recipe uses (reasoning, then a boxed answer or a code block) so
the same rewards apply, and the two domains give the quickstart SRPO's two stages: math first, then math + code.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORD_TOKENS = ["<think>", "</think>", "\\boxed{"]
CHARS = list("0123456789+-*=?{}() \n") + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!'/")
CODE_TOKENS = ["```python\n", "\n```"]  # last, so the ids of the tokens above do not depend on them


DOMAINS = ("math", "code")
CODE_PREFIX = "py:"


@dataclass(frozen=True)
class Problem:
    id: str
    expression: str  # "37+48"
    answer: str  # "85"
    domain: str = "math"

    @property
    def prompt(self) -> str:
        return f"{CODE_PREFIX if self.domain == 'code' else ''}{self.expression}="


def make_problems(n: int, seed: int, max_operand: int = 99, prefix: str = "add", domain: str = "math"
                  ) -> list[Problem]:
    """``min(n, (max_operand + 1)^2)`` distinct addition problems with operands in [0, max_operand]; the same
    ``seed`` gives the same sums in either domain."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    n = min(n, (max_operand + 1) ** 2)
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    problems: list[Problem] = []
    while len(problems) < n:
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        problems.append(Problem(f"{prefix}-{a}-{b}", f"{a}+{b}", str(a + b), domain))
    return problems


def solution_text(problem: Problem, answer: str | None = None) -> str:
    """The well-formed response (with ``answer`` in place of the right one, if given)."""
    value = problem.answer if answer is None else answer
    if problem.domain == "code":
        return f"<think>{problem.expression}</think>```python\nprint({value})\n```"
    return f"<think>{problem.expression}</think>\\boxed{{{value}}}"


def is_solved(problem: Problem, response: str) -> bool:
    """Exact check for pretraining's greedy evaluation: the response is :func:`solution_text` (the rewards grade
    the RL runs, which also accept e.g. ``print(37+48)``)."""
    return response == solution_text(problem)


def build_tokenizer(out_dir: str | Path) -> None:
    """Write an HF fast tokenizer (tokenizer.json + config) that maps each character to one id."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + WORD_TOKENS + CHARS + CODE_TOKENS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.add_tokens(WORD_TOKENS + CODE_TOKENS)
    fast.save_pretrained(str(out_dir))
    # vLLM reads generation defaults from here; keep them neutral.
    (Path(out_dir) / "generation_config.json").write_text(json.dumps({"eos_token_id": vocab["<eos>"],
                                                                       "bos_token_id": vocab["<bos>"]}))


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(WORD_TOKENS) + len(CHARS) + len(CODE_TOKENS)


def write_datasets(out_dir: str | Path, n_train: int, n_heldout: int, seed: int, held_out_seed: int,
                   max_operand: int = 99) -> None:
    """Write the RL prompts and evaluation files of both domains: ``train.jsonl`` / ``heldout.jsonl`` (math
    records) and ``code_train.jsonl`` / ``code_heldout.jsonl`` (code records with one stdin/stdout test). A sum
    held out in one domain is held out in both and never appears in a training file."""
    from srpo_mcore.data.records import CodeRecord, CodeTest, MathRecord

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for domain, stem in (("math", ""), ("code", "code_")):
        held_out = make_problems(n_heldout, held_out_seed, max_operand, prefix=f"{stem}eval", domain=domain)
        taken = {p.expression for p in held_out}
        train = [p for p in make_problems(n_train + n_heldout, seed, max_operand, prefix=f"{stem}train",
                                          domain=domain) if p.expression not in taken][:n_train]
        for name, problems in ((f"{stem}train.jsonl", train), (f"{stem}heldout.jsonl", held_out)):
            rows = [(MathRecord(id=p.id, problem=p.prompt, answer=p.answer, source="arithmetic") if domain == "math"
                     else CodeRecord(id=p.id, problem=p.prompt, tests=[CodeTest("stdin", "", p.answer)],
                                     source="arithmetic")).to_dict() for p in problems]
            tmp = out / (name + ".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(out / name)


def main(argv=None) -> int:
    """``python -m srpo_mcore.quickstart.arithmetic --out DIR``: write the quickstart's train/held-out files
    (``--train`` / ``--heldout`` problems per domain)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=1500,
                    help="training prompts per domain: History Resampling acts ~3 times on math in the quickstart's "
                    "160 steps; with 400 it acted 32 times but shrank the set to the 15 hardest prompts and held-out "
                    "pass@1 fell (docs/benchmarks.md)")
    ap.add_argument("--heldout", type=int, default=128)
    ap.add_argument("--max-operand", type=int, default=99)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--heldout-seed", type=int, default=999)
    args = ap.parse_args(argv)
    write_datasets(args.out, args.train, args.heldout, args.seed, args.heldout_seed, args.max_operand)
    print(f"wrote {args.out}/{{,code_}}train.jsonl and {args.out}/{{,code_}}heldout.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
