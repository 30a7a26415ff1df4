"""The house rules that keep the code easy to live in, checked on the source itself (``ast``, no imports):
no import cycle among the project's modules (imports inside functions count), size limits per
folder, and no single-letter module aliases.

The checkers are tested on small synthetic trees too, so a check that could never fail is caught.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pneumo_core", "ui", "app_pages")  # project modules; app.py is the entry point
LINE_LIMITS = {"ui": 300, "app_pages": 300, "pneumo_core": 450, "app.py": 60}
ALIAS_CHECKED = (*PACKAGES, "scripts", "tests", "benchmarks", "app.py")

# ---------------------------------------------------------------- the checkers
def project_files(root: Path) -> dict[str, Path]:
    """Module name -> file for every .py under the project packages, and the ``app`` entry point."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    if (root / "app.py").is_file():
        modules["app"] = root / "app.py"
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and modules[name].name == "__init__.py"


def _from_base(node: ast.ImportFrom, name: str, modules: dict[str, Path]) -> str:
    """The absolute module a ``from ... import`` in module ``name`` reads from."""
    if not node.level:
        return node.module or ""
    package = (name if _is_package(name, modules) else name.rpartition(".")[0]).split(".")
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` (file ``path``) imports anywhere in its body:
    top level, inside functions, under ``if``; a ``from package import module`` counts as the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, modules)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import pneumo_core.x.y`` -> the longest known prefix
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file)."""
    modules = project_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_path(graph: dict[str, set[str]], group: list[str]) -> str:
    """The shortest import loop through the first module of ``group``, written ``a -> b -> a``."""
    start, members = group[0], set(group)
    came_from, queue = {}, [start]
    while queue:  # breadth-first, inside the group, until an edge leads back to ``start``
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return " -> ".join([start, *reversed(path[:-1]), start])
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return " <-> ".join(group)


def line_limit(relative: str) -> int | None:
    """The most lines a file may have, by its folder (``None``: no limit)."""
    return LINE_LIMITS.get(relative) or LINE_LIMITS.get(relative.split("/")[0] if "/" in relative else "")


def single_letter_module_aliases(name: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """``import x as y`` and ``from package import module as y`` with a one-letter ``y`` in module
    ``name`` (file ``path``), each as ``line: ... import x as y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            bad = [a for a in node.names if a.asname and len(a.asname) == 1]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, modules)
            bad = [a for a in node.names if a.asname and len(a.asname) == 1 and f"{base}.{a.name}" in modules]
        else:
            continue
        found += [f"{node.lineno}: ... import {a.name} as {a.asname}" for a in bad]
    return found


def module_name(relative: str) -> str:
    """``pneumo_core/infer.py`` -> ``pneumo_core.inference.predictor`` (a script's name is its path, dotted)."""
    parts = Path(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _checked_files(folders) -> list[str]:
    out = []
    for folder in folders:
        target = ROOT / folder
        files = [target] if target.is_file() else sorted(target.rglob("*.py"))
        out += [f.relative_to(ROOT).as_posix() for f in files]
    return out


# ---------------------------------------------------------------- the rules on this checkout
def test_no_import_cycles_among_project_modules():
    graph = import_graph(ROOT)
    assert "pneumo_core.inference.predictor" in graph and "pneumo_core.inference.model_files" in graph["pneumo_core.inference.predictor"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(
        cycle_path(graph, group) for group in cycles)


@pytest.mark.parametrize("relative", [f for f in _checked_files(LINE_LIMITS)
                                      if line_limit(f) is not None])
def test_file_sizes(relative):
    lines = len((ROOT / relative).read_text().splitlines())
    assert lines <= line_limit(relative), f"{relative} has {lines} lines; the limit there is {line_limit(relative)}"


@pytest.mark.parametrize("relative", _checked_files(ALIAS_CHECKED))
def test_no_single_letter_module_aliases(relative):
    found = single_letter_module_aliases(module_name(relative), ROOT / relative, project_files(ROOT))
    assert not found, f"{relative}: name modules by what they are: " + "; ".join(found)


def test_training_does_not_import_the_dashboards_report_reader():
    graph = import_graph(ROOT)
    assert "pneumo_core.evaluation.reports" not in graph["pneumo_core.training.trainer"]
    assert "pneumo_core.evaluation.reports" not in graph["pneumo_core.training.combine"]


# ---------------------------------------------------------------- the checkers can fail
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    root = _tree(tmp_path, {
        "pneumo_core/__init__.py": "",
        "pneumo_core/export.py": "from pneumo_core.inference.predictor import Predictor\n",
        "pneumo_core/infer.py": "def f():\n    from . import tflite\n",
        "pneumo_core/tflite.py": "import numpy\n\ndef g():\n    if True:\n        from pneumo_core.training.export import x\n",
        "pneumo_core/alone.py": "from pneumo_core.inference.predictor import Predictor\n",
        "ui/__init__.py": "",
        "ui/cards.py": "from pneumo_core import alone\n",
        "app.py": "from ui import cards as card_views\n",
    })
    graph = import_graph(root)
    assert graph["ui.cards"] == {"pneumo_core.alone"} and graph["app"] == {"ui.cards"}
    assert find_cycles(graph) == [["pneumo_core.training.export", "pneumo_core.inference.predictor", "pneumo_core.inference.tflite"]]
    assert cycle_path(graph, find_cycles(graph)[0]) == \
        "pneumo_core.training.export -> pneumo_core.inference.predictor -> pneumo_core.inference.tflite -> pneumo_core.training.export"


def test_a_two_module_cycle_across_packages_is_found(tmp_path):
    root = _tree(tmp_path, {"pneumo_core/__init__.py": "", "pneumo_core/review.py": "import ui.cards\n",
                            "ui/__init__.py": "", "ui/cards.py": "from pneumo_core.review import rows\n"})
    assert find_cycles(import_graph(root)) == [["pneumo_core.review.decisions", "ui.cards"]]


def test_single_letter_aliases_are_found(tmp_path):
    root = _tree(tmp_path, {"pneumo_core/__init__.py": "", "pneumo_core/data.py": "",
                            "pneumo_core/a.py": "from . import data as D\nimport numpy as np\nimport json as j\n"
                                                "from pneumo_core.training.data import x as y\n"})
    found = single_letter_module_aliases("pneumo_core.a", root / "pneumo_core/a.py", project_files(root))
    assert found == ["1: ... import data as D", "3: ... import json as j"]


def test_size_limits_by_folder():
    assert line_limit("ui/cards.py") == 300 and line_limit("app_pages/home.py") == 300
    assert line_limit("pneumo_core/infer.py") == 450 and line_limit("app.py") == 60
    assert line_limit("tests/test_app.py") is None
