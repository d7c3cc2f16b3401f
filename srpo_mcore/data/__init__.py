"""Data layer: typed records, validated loaders and prompt templates (curation is ``srpo_mcore/curation/``).

records.py   MathRecord / CodeRecord / CodeTest, dict (JSON) form, DataError
formats.py   field mappings of the public dataset layouts, format detection
files.py     raw row reading (JSON, JSONL, .gz, Parquet) and atomic writes
loaders.py   load_file / load_records / load_many: validated loading
text.py      escape repair and cleaning helpers
templates.py prompt templates by name
inspect.py   ``python -m srpo_mcore.data.inspect``
config_checks.py  the ``data`` config section's names (file types, formats, templates), registered on import
"""

from srpo_mcore.data import config_checks  # noqa: F401  (registers DataConfig's name checks)
from srpo_mcore.data.loaders import LoadResult, load_file, load_many, load_records
from srpo_mcore.data.records import CodeRecord, CodeTest, DataError, MathRecord, Record, record_from_dict
from srpo_mcore.data.templates import PromptTemplate, get_template

__all__ = [
    "CodeRecord",
    "CodeTest",
    "DataError",
    "LoadResult",
    "MathRecord",
    "PromptTemplate",
    "Record",
    "get_template",
    "load_file",
    "load_many",
    "load_records",
    "record_from_dict",
]
