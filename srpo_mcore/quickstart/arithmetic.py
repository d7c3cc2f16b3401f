"""The CPU quickstart's task: integer arithmetic, with a character-level tokenizer.

Problems look like ``37+48=`` and a well-formed answer like ``<think>37+48</think>\\boxed{85}``. The format
follows the R1-Zero template the real recipe uses (reasoning, then a boxed answer) so the same rewards apply.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORD_TOKENS = ["<think>", "</think>", "\\boxed{"]
CHARS = list("0123456789+-*=?{}() \n") + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!'/")


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    answer: str


def make_problems(n: int, seed: int, max_operand: int = 99, prefix: str = "add") -> list[Problem]:
    """``min(n, (max_operand + 1)^2)`` distinct addition problems ``a+b=`` with operands in [0, max_operand]."""
    n = min(n, (max_operand + 1) ** 2)
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    problems = []
    while len(problems) < n:
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        problems.append(Problem(f"{prefix}-{a}-{b}", f"{a}+{b}=", str(a + b)))
    return problems


def solution_text(problem: Problem, answer: str | None = None) -> str:
    expression = problem.prompt.rstrip("=")
    return f"<think>{expression}</think>\\boxed{{{problem.answer if answer is None else answer}}}"


def build_tokenizer(out_dir: str | Path) -> None:
    """Write an HF fast tokenizer (tokenizer.json + config) that maps each character to one id."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + WORD_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.add_tokens(WORD_TOKENS)
    fast.save_pretrained(str(out_dir))
    # vLLM reads generation defaults from here; keep them neutral.
    (Path(out_dir) / "generation_config.json").write_text(json.dumps({"eos_token_id": vocab["<eos>"],
                                                                       "bos_token_id": vocab["<bos>"]}))


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(WORD_TOKENS) + len(CHARS)


def write_datasets(out_dir: str | Path, n_train: int, n_heldout: int, seed: int, held_out_seed: int,
                   max_operand: int = 99) -> None:
    """Write ``train.jsonl`` (RL prompts) and ``heldout.jsonl`` (evaluation) as math records; held-out problems
    never appear in the training file."""
    from srpo_mcore.data.records import MathRecord

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held_out = make_problems(n_heldout, held_out_seed, max_operand, prefix="eval")
    taken = {p.prompt for p in held_out}
    train = [p for p in make_problems(n_train + n_heldout, seed, max_operand, prefix="train")
             if p.prompt not in taken][:n_train]
    for name, problems in (("train.jsonl", train), ("heldout.jsonl", held_out)):
        rows = [MathRecord(id=p.id, problem=p.prompt, answer=p.answer, source="arithmetic").to_dict() for p in problems]
        tmp = out / (name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(out / name)


def main(argv=None) -> int:
    """``python -m srpo_mcore.quickstart.arithmetic --out DIR``: write the quickstart's train/held-out files."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--heldout", type=int, default=128)
    ap.add_argument("--max-operand", type=int, default=99)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--heldout-seed", type=int, default=999)
    args = ap.parse_args(argv)
    write_datasets(args.out, args.train, args.heldout, args.seed, args.heldout_seed, args.max_operand)
    print(f"wrote {args.out}/train.jsonl and {args.out}/heldout.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
