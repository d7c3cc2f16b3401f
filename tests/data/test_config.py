import dataclasses
import subprocess
import sys

import pytest

import srpo_mcore.data  # noqa: F401  (registers DataConfig's name checks)
from srpo_mcore.config.base import ConfigError
from srpo_mcore.config.data import DataConfig
from srpo_mcore.curation.config import CurationConfig
from tests.torchrun import REPO_ROOT


@pytest.mark.parametrize("cls", [DataConfig, CurationConfig])
def test_defaults_validate_and_every_field_has_help(cls):
    cls().validate()
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    "change, key, message",
    [
        ({"math_train_files": ["train.csv"]}, "data.math_train_files[0]", ".parquet"),
        ({"eval_files": "aime24.json"}, "data.eval_files", "list of file paths"),
        ({"file_format": "xml"}, "data.file_format", "not one of"),
        ({"on_invalid_row": "ignore"}, "data.on_invalid_row", "not one of"),
        ({"math_template": "r1_zero_code"}, "data.math_template", "is for code, not math"),
        ({"code_template": "missing"}, "data.code_template", "unknown prompt template"),
    ],
)
def test_data_config_errors_name_the_key(change, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        dataclasses.replace(DataConfig(), **change).validate()
    assert info.value.key == key


@pytest.mark.parametrize(
    "change, key",
    [
        ({"filters": ["needs_figure", "no_such_filter"]}, "curation.filters[1]"),
        ({"near_dup_threshold": 1.5}, "curation.near_dup_threshold"),
        ({"pass_k": 0}, "curation.pass_k"),
        ({"easy_solve_rate": 0.1, "hard_solve_rate": 0.5}, "curation.easy_solve_rate"),
        ({"drop_difficulties": ["trivial"]}, "curation.drop_difficulties[0]"),
    ],
)
def test_curation_config_errors_name_the_key(change, key):
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(CurationConfig(), **change).validate()
    assert info.value.key == key


def test_config_does_not_import_data_and_the_data_package_registers_its_checks():
    """Loading a config imports no data module (layers point down); importing ``srpo_mcore.data`` adds the name
    checks to ``DataConfig.validate`` (once, however often it is imported)."""
    code = """
import sys
from srpo_mcore.config import load_config
from srpo_mcore.config.base import ConfigError
from srpo_mcore.config.data import _NAME_CHECKS, register_name_check
load_config("configs/models/tiny.yaml", ["data.file_format=xml"])  # no data-layer check yet
assert not [m for m in sys.modules if m.startswith("srpo_mcore.data")], "config imported the data package"
import srpo_mcore.data
from srpo_mcore.data.config_checks import check_data_names
register_name_check(check_data_names)
assert _NAME_CHECKS == [check_data_names], _NAME_CHECKS
try:
    load_config("configs/models/tiny.yaml", ["data.file_format=xml"])
except ConfigError as e:
    print(e.key)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["data.file_format"]
