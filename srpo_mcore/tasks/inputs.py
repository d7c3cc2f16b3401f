"""The files a training run reads and their rows, checked by the entry point before any rank starts work.

A missing init checkpoint or data file, or a malformed row, would otherwise surface after the process groups,
Megatron and vLLM are up, as a library traceback on every rank (a missing directory reaches the HF hub client as a
repo id). Each problem is one line naming the config key and the path, or the file, row and field.
"""

from __future__ import annotations

from pathlib import Path

from srpo_mcore.config import SRPOConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")  # any one of them
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def hf_checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not an HF checkpoint directory with weights, config.json and a tokenizer, or ``None``."""
    path = Path(path)
    if not path.is_dir():
        return "no such directory"
    missing = [what for what, names in (("config.json", ("config.json",)), ("weights", WEIGHT_FILES),
                                        ("tokenizer", TOKENIZER_FILES))
               if not any((path / name).is_file() for name in names)]
    if missing:
        return (f"not an HF checkpoint directory: no {' and no '.join(missing)} (expected config.json, "
                f"{' or '.join(WEIGHT_FILES)}, and {' or '.join(TOKENIZER_FILES)})")
    return None


def training_input_problems(cfg: SRPOConfig) -> list[str]:
    """Every problem with the run's input files, one line each, naming the config key."""
    problems = []
    init = cfg.train.init_checkpoint
    if not init:
        problems.append("train.init_checkpoint is empty: SRPO starts from a pretrained HF checkpoint directory "
                        "(its weights and tokenizer)")
    elif (why := hf_checkpoint_problem(init)) is not None:
        problems.append(f"train.init_checkpoint={init}: {why}")
    for key in ("math_train_files", "code_train_files", "eval_files"):
        for i, name in enumerate(getattr(cfg.data, key)):
            if not Path(name).is_file():
                problems.append(f"data.{key}[{i}]={name}: no such file")
    if cfg.train.replay_dir and not problems:
        from srpo_mcore.tasks.replay import replay_problems

        problems.extend(replay_problems(cfg))
    return problems


def training_data_problems(cfg: SRPOConfig) -> list[str]:
    """The first malformed row of each data file group (math and code training files, evaluation files), read and
    validated exactly as the trainer will read them: ``FILE: line N: field 'F': what is wrong``. Call it once the
    files exist (:func:`training_input_problems`)."""
    from srpo_mcore.data.loaders import load_many

    groups = [(cfg.data.math_train_files, "math"), (cfg.data.code_train_files, "code"), (cfg.data.eval_files, None)]
    problems = []
    for files, domain in groups:
        if not files:
            continue
        try:
            load_many(files, format=cfg.data.file_format, on_invalid=cfg.data.on_invalid_row, domain=domain)
        except (ValueError, OSError) as e:  # DataError (a ValueError) names the file, row and field
            problems.append(str(e))
    return problems
