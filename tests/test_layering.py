"""Layers point down: which subpackages of ``srpo_mcore`` may import which, no import cycle between them, and
``kernels/`` (imported as ``srpo_kernels``) independent of ``srpo_mcore``.

Every import statement counts, including the lazy ones inside functions (they are how a cycle hides). The check
reads the source with ``ast``; it imports nothing. A unit is a top-level module or subpackage of ``srpo_mcore``
(``srpo_mcore.platform``, ``srpo_mcore.rollout``, ...); imports within a unit are free. A unit may import the
units of lower tiers, never one of its own tier or above. Entry points (pretrain_srpo.py, scripts/) and tests
sit above everything and are not checked.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.torchrun import REPO_ROOT

# Bottom first. Units of one tier do not import each other.
TIERS: list[tuple[str, ...]] = [
    ("config", "platform", "_C"),  # typed config; the CPU adaptation of CUDA-only code; csrc/'s native extension
    ("distributed",),  # process groups
    ("data", "model", "planning"),  # records, loaders, templates | Qwen2 on Megatron-Core, checkpoints (incl.
    # trainer's) | the dry-run memory planner
    ("rollout",),  # vLLM engine inside torchrun, weight sync
    ("job",),  # a torchrun job's lifecycle: logging, process groups, engine start, shutdown order
    ("rewards",),  # rule rewards, code sandbox
    ("tasks", "curation"),  # prompts + scoring + pass@k shared by train and eval | offline dataset curation
    ("algorithm",),  # advantages, History Resampling, stages
    ("train",),  # the SRPO loop
    ("eval", "quickstart", "convert"),  # evaluation job, CPU quickstart, checkpoint conversion CLI
]
# Pairs that must not import each other even though the tiers would allow it.
INDEPENDENT: list[tuple[str, str]] = [
    ("eval", "train"),  # they share srpo_mcore/tasks/ and srpo_mcore/model/; neither imports the other
]
KERNELS = "srpo_kernels"  # the kernels/ folder; may be imported by srpo_mcore, imports none of it


@dataclass(frozen=True)
class Import:
    source: str  # the importing unit
    target: str  # the imported unit
    where: str  # "path:line"
    statement: str


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import anywhere in the module (top level, functions, ``TYPE_CHECKING``).
    ``from pkg import name`` yields ``pkg.name`` (a submodule or an attribute; both resolve to ``pkg``'s unit
    unless ``name`` is a unit itself)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def unit_of(name: str) -> str | None:
    """``srpo_mcore.rollout.engine`` -> ``rollout``; ``srpo_kernels.x`` -> ``srpo_kernels``; other -> ``None``."""
    parts = name.split(".")
    if parts[0] == KERNELS:
        return KERNELS
    if parts[0] == "srpo_mcore":
        return parts[1] if len(parts) > 1 else "srpo_mcore"
    return None


def collect_imports(trees: dict[str, Path]) -> list[Import]:
    """Imports between units of the packages in ``trees`` (import name -> folder)."""
    edges = []
    for package, root in trees.items():
        for path in sorted(root.rglob("*.py")):
            module = module_name(path, root, package)
            source = unit_of(module)
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, name in imported_modules(tree, module, path.name == "__init__.py"):
                target = unit_of(name)
                if target is not None and target != source:
                    edges.append(Import(source, target, f"{path}:{line}", name))
    return edges


def layering_violations(edges: list[Import], tiers: list[tuple[str, ...]],
                        independent: list[tuple[str, str]]) -> list[str]:
    """One line per import that breaks the table (upward, sideways, into/out of the kernels, unknown unit)."""
    tier = {unit: i for i, units in enumerate(tiers) for unit in units}
    forbidden = {frozenset(pair) for pair in independent}
    problems = []
    for e in edges:
        if e.source == KERNELS:
            problems.append(f"{e.where}: srpo_kernels imports {e.statement}; the kernels must not depend on "
                            "srpo_mcore")
        elif e.target == KERNELS or e.target == "srpo_mcore":
            continue
        elif e.source not in tier or e.target not in tier:
            unknown = e.source if e.source not in tier else e.target
            problems.append(f"{e.where}: unit {unknown!r} is not in the layer table (tests/test_layering.py TIERS)")
        elif frozenset((e.source, e.target)) in forbidden:
            problems.append(f"{e.where}: {e.source} imports {e.statement}; {e.source} and {e.target} are "
                            "declared independent")
        elif tier[e.target] >= tier[e.source]:
            how = "its own tier" if tier[e.target] == tier[e.source] else "a higher tier"
            problems.append(f"{e.where}: {e.source} imports {e.statement}, from {how} ({e.target}); layers "
                            "point down")
    return problems


def import_cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


REAL_TREES = {"srpo_mcore": REPO_ROOT / "srpo_mcore", KERNELS: REPO_ROOT / "kernels"}


def test_every_unit_is_in_the_table():
    units = {p.stem if p.is_file() else p.name for p in (REPO_ROOT / "srpo_mcore").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert units | {"_C"} == {u for tier in TIERS for u in tier}  # _C: built by setup.py, maybe absent


def test_srpo_mcore_and_kernels_follow_the_layer_table():
    edges = collect_imports(REAL_TREES)
    assert len(edges) > 50  # the walk found the imports (a broken walk would pass vacuously)
    assert layering_violations(edges, TIERS, INDEPENDENT) == []


def test_no_import_cycle_between_subpackages():
    assert import_cycles(collect_imports(REAL_TREES)) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_a_violating_tree_is_caught(tmp_path):
    """A synthetic package breaking the table every way: an upward import hidden in a function, a sideways
    import, a relative import into a higher unit, a cycle, an unknown unit, and kernels importing srpo_mcore."""
    pkg, kern = tmp_path / "srpo_mcore", tmp_path / "kernels"
    _write(pkg, {
        "__init__.py": "",
        "config/__init__.py": "from srpo_mcore.config import base\n",  # within a unit: free
        "config/base.py": "",
        "data/__init__.py": "def lazy():\n    from srpo_mcore.train import loop\n",  # upward, lazy
        "model/__init__.py": "import srpo_mcore.data.records\n",  # same tier (data, model)
        "train/__init__.py": "from srpo_mcore.data import load\nfrom srpo_kernels import op\n",  # down: fine
        "train/loop.py": "from ..eval import report\n",  # relative, into eval: declared independent
        "eval/__init__.py": "from srpo_mcore import train\n",  # down, but independent of train
        "extras/__init__.py": "from srpo_mcore.config import base\n",  # a unit missing from the table
    })
    _write(kern, {"__init__.py": "", "op.py": "from srpo_mcore.config import base\n"})
    tiers = [("config",), ("data", "model"), ("train",), ("eval",)]
    edges = collect_imports({"srpo_mcore": pkg, KERNELS: kern})
    problems = layering_violations(edges, tiers, [("eval", "train")])
    expected = {
        ("data/__init__.py:2", "from a higher tier (train)"),
        ("model/__init__.py:1", "from its own tier (data)"),
        ("train/loop.py:1", "train and eval are declared independent"),
        ("eval/__init__.py:1", "eval and train are declared independent"),
        ("extras/__init__.py:1", "unit 'extras' is not in the layer table"),
        ("kernels/op.py:1", "the kernels must not depend on srpo_mcore"),
    }
    assert len(problems) == len(expected), problems
    for where, words in expected:
        assert any(where in p and words in p for p in problems), (where, words, problems)
    assert import_cycles(edges) == [["data", "eval", "train"]]  # data <-> train and train <-> eval: one component


def test_relative_imports_resolve_like_python(tmp_path):
    pkg = tmp_path / "srpo_mcore"
    _write(pkg, {"__init__.py": "", "rollout/__init__.py": "from . import engine\n",
                 "rollout/engine.py": "from ..model import qwen2\nfrom .packed import x\n"})
    edges = collect_imports({"srpo_mcore": pkg})
    assert [(e.source, e.target, e.statement) for e in edges] == [("rollout", "model", "srpo_mcore.model.qwen2")]
