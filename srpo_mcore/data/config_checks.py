"""The ``data`` config section's names, checked against this package's own tables: file types the readers know
(``files.file_kind``), row formats (``formats.FORMATS``) and prompt templates (``templates``, built-in, registered
or a text file). Registered with ``DataConfig.validate`` when ``srpo_mcore.data`` is imported, so config does not
import data (see ``srpo_mcore/config/data.py``)."""

from __future__ import annotations

from srpo_mcore.config.base import check, check_choice
from srpo_mcore.config.data import DataConfig, register_name_check
from srpo_mcore.data.files import file_kind
from srpo_mcore.data.formats import FORMATS
from srpo_mcore.data.records import DataError
from srpo_mcore.data.templates import get_template, template_names


@register_name_check
def check_data_names(section: DataConfig, prefix: str) -> None:
    for name in ("math_train_files", "code_train_files", "eval_files"):
        for i, path in enumerate(getattr(section, name)):
            try:
                file_kind(path)
            except DataError:
                check(False, f"{prefix}.{name}[{i}]",
                      f"{path!r}: use a .json, .jsonl, .ndjson (optionally .gz) or .parquet file")
    check_choice(section.file_format, ("auto", *FORMATS), f"{prefix}.file_format")
    for domain in ("math", "code"):
        key, value = f"{prefix}.{domain}_template", getattr(section, f"{domain}_template")
        try:
            get_template(value, domain)
        except ValueError as err:
            check(False, key, f"{err} (registered: {', '.join(template_names(domain))})")
