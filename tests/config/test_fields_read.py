"""Every config field is read by the code: a field nothing reads is a setting that silently does nothing (as
``optimizer.lr_schedule`` once was). A field counts as read when

* ``.name`` is accessed somewhere in ``srpo_mcore/`` outside ``srpo_mcore/config/``, or in ``pretrain_srpo.py``
  (``getattr(x, "name")`` with a literal name counts too), or
* a method or property of its own section (not ``validate``) reads ``self.name`` and that method is itself used
  outside the config package (``ModelConfig.padded_vocab_size`` reads ``make_vocab_size_divisible_by``).

The scan is by name, so it can only miss an unread field whose name is also used for something else; it never
flags a field that is read."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path

from srpo_mcore.config import SRPOConfig

REPO = Path(__file__).resolve().parents[2]
# Read by name through string building, which an attribute scan cannot see; each with where it is read.
ALLOWED: dict[str, str] = {}


def _names_read_outside_config() -> set[str]:
    files = [p for p in (REPO / "srpo_mcore").rglob("*.py") if (REPO / "srpo_mcore" / "config") not in p.parents]
    names: set[str] = set()
    for path in [*files, REPO / "pretrain_srpo.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                  "setattr", "hasattr") and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
                names.add(node.args[1].value)
    return names


def _sections(cls: type, prefix: str = ""):
    """(dotted key, field name, section class) of every leaf field, recursing into nested sections."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _sections(hints[field.name], key + ".")
        else:
            yield key, field.name, cls


def _read_through_used_methods(cls: type, used: set[str]) -> set[str]:
    """Fields that methods/properties of ``cls`` read as ``self.x``, for the methods used outside the config."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    read: set[str] = set()
    for node in tree.body[0].body:
        if isinstance(node, ast.FunctionDef) and node.name != "validate" and node.name in used:
            read |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                     and isinstance(n.value, ast.Name) and n.value.id == "self"}
    return read


def test_every_config_field_is_read():
    used = _names_read_outside_config()
    unread = [key for key, name, cls in _sections(SRPOConfig)
              if name not in used and name not in _read_through_used_methods(cls, used) and key not in ALLOWED]
    assert not unread, (f"config fields nothing outside srpo_mcore/config/ reads: {unread}; wire each into the code "
                        "or remove it")


def test_the_scan_flags_an_unread_field():
    """The check itself: a section with a field no code reads is reported."""

    @dataclasses.dataclass
    class Probe:
        lr_schedule_never_read_anywhere: str = "cosine"

    used = _names_read_outside_config()
    assert [k for k, n, c in _sections(Probe) if n not in used and n not in _read_through_used_methods(c, used)] == [
        "lr_schedule_never_read_anywhere"]
