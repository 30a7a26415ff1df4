"""The house rules that keep the code easy to live in, checked on the source itself (``ast``, no imports):
no import cycle among the project's modules (imports inside functions count), dependencies that point one
way (pages -> ui -> core; cli -> library; inference never imports training), argparse only in the CLI
package, no ``sys.path`` edits, subpackages that say what they are for (and the README's layout list
matching them), size limits per folder, and no single-letter module aliases.

The checkers are tested on small synthetic trees too, so a check that could never fail is caught.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.support import parse

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
    tree = parse(path)
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
    for node in ast.walk(parse(path)):
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
    """``pneumo_core/inference/predictor.py`` -> ``pneumo_core.inference.predictor`` (a script's name is its
    path, dotted)."""
    parts = Path(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _checked_files(folders) -> list[str]:
    out = []
    for folder in folders:
        target = ROOT / folder
        files = [target] if target.is_file() else sorted(target.rglob("*.py"))
        out += [f.relative_to(ROOT).as_posix() for f in files]
    return out


# ---------------------------------------------------------------- more checkers
# (importer prefix, imported prefix, why): no module under the first may import one under the second.
FORBIDDEN = (
    ("pneumo_core", "ui", "the library has no UI"),
    ("pneumo_core", "app_pages", "the library has no UI"),
    ("pneumo_core", "app", "the library has no UI"),
    ("ui", "app_pages", "pages use ui, not the other way"),
    ("pneumo_core.inference", "pneumo_core.training", "scoring must not need the training code"),
    ("pneumo_core.imaging", "pneumo_core.inference", "decoding knows nothing of models"),
    ("pneumo_core.imaging", "pneumo_core.training", "decoding knows nothing of models"),
    ("pneumo_core.datasets", "pneumo_core.training", "listing films needs no TensorFlow"),
    ("pneumo_core.evaluation", "pneumo_core.training", "reading reports needs no TensorFlow"),
    ("pneumo_core.review", "pneumo_core.training", "the dashboard's core needs no TensorFlow"),
    ("pneumo_core.pacs", "pneumo_core.training", "the PACS source needs no TensorFlow"),
    ("pneumo_core.quiz", "pneumo_core.training", "the quiz needs no TensorFlow"),
)
LIBRARY_NOT_CLI = "pneumo_core.cli"  # only the CLI package itself and __main__ may import it


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks :data:`FORBIDDEN`, or a library module importing the CLI, as ``a -> b (why)``."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            for importer, imported, why in FORBIDDEN:
                if _under(module, importer) and _under(target, imported):
                    found.append(f"{module} -> {target} ({why})")
            if (_under(target, LIBRARY_NOT_CLI) and _under(module, "pneumo_core")
                    and not _under(module, LIBRARY_NOT_CLI) and module != "pneumo_core.__main__"):
                found.append(f"{module} -> {target} (library functions return results; the CLI prints them)")
    return found


def modules_importing(path: Path, name: str) -> list[int]:
    """Lines of ``path`` that import module ``name`` (``import name``, ``from name import ...``)."""
    lines = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import) and any(_under(a.name, name) for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and _under(node.module or "", name):
            lines.append(node.lineno)
    return lines


def sys_path_edits(path: Path) -> list[int]:
    """Lines that change ``sys.path`` (``sys.path.insert/append/extend/...`` or an assignment to it)."""
    lines = []
    for node in ast.walk(parse(path)):
        target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))), None)
            target = target.value if isinstance(target, ast.Subscript) else target
        if (isinstance(target, ast.Attribute) and target.attr == "path" and isinstance(target.value, ast.Name)
                and target.value.id == "sys"):
            lines.append(node.lineno)
    return sorted(lines)


def readme_layout_names(readme: str) -> set[str]:
    """The entries the README's layout block lists under ``pneumo_core/``: the first word of each indented line."""
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    names, inside = set(), False
    for line in block.splitlines():
        if line.startswith("pneumo_core/"):
            inside = True
            continue
        if inside and line.startswith("  ") and line.strip():
            names.add(line.split()[0])
        elif inside and line.strip():
            inside = False
    return names


def package_entries(package: Path) -> set[str]:
    """What ``ls pneumo_core`` shows that a newcomer reads: subpackages as ``name/``, modules as ``name.py``."""
    return ({f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
            | {p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")})


def _python_files() -> list[Path]:
    skip = {".venv", ".venv-lean", ".git", "runs", "test-artifacts", "node_modules"}
    return sorted(p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts))


# ---------------------------------------------------------------- the rules on this checkout
def test_no_import_cycles_among_project_modules():
    graph = import_graph(ROOT)
    assert "pneumo_core.inference.model_files" in graph["pneumo_core.inference.backends"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(
        cycle_path(graph, group) for group in cycles)


def test_dependencies_point_one_way():
    found = wrong_way_imports(import_graph(ROOT))
    assert not found, "imports against the layout: " + "; ".join(found)


def test_argparse_only_in_the_cli_package():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / "pneumo_core").rglob("*.py"))
             if "cli" not in path.relative_to(ROOT / "pneumo_core").parts[:1]
             for line in modules_importing(path, "argparse")]
    assert not found, "argparse outside pneumo_core/cli (library functions take plain arguments): " + ", ".join(found)


def test_no_sys_path_edits_anywhere():
    found = [f"{path.relative_to(ROOT)}:{line}" for path in _python_files() for line in sys_path_edits(path)]
    assert not found, "sys.path edited (install the project: pip install -e .): " + ", ".join(found)


def test_subpackages_say_what_they_are_for():
    subpackages = sorted(p.parent for p in (ROOT / "pneumo_core").glob("*/__init__.py"))
    assert len(subpackages) >= 5, [p.name for p in subpackages]
    for package in subpackages:
        doc = ast.get_docstring(parse(package / "__init__.py"))
        assert doc and len(doc.split(".")[0]) > 20, f"pneumo_core/{package.name}/__init__.py needs a one-line purpose"


def test_readme_layout_lists_what_ls_shows():
    listed = readme_layout_names((ROOT / "README.md").read_text())
    present = package_entries(ROOT / "pneumo_core")
    assert listed == present, f"README layout: missing {sorted(present - listed)}, stale {sorted(listed - present)}"


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
        "pneumo_core/export.py": "from .infer import Predictor\n",
        "pneumo_core/infer.py": "def f():\n    from . import tflite\n",
        "pneumo_core/tflite.py": "import numpy\n\ndef g():\n    if True:\n        from pneumo_core.export import x\n",
        "pneumo_core/alone.py": "from .infer import Predictor\n",
        "ui/__init__.py": "",
        "ui/cards.py": "from pneumo_core import alone\n",
        "app.py": "from ui import cards as card_views\n",
    })
    graph = import_graph(root)
    assert graph["ui.cards"] == {"pneumo_core.alone"} and graph["app"] == {"ui.cards"}
    assert find_cycles(graph) == [["pneumo_core.export", "pneumo_core.infer", "pneumo_core.tflite"]]
    assert cycle_path(graph, find_cycles(graph)[0]) == \
        "pneumo_core.export -> pneumo_core.infer -> pneumo_core.tflite -> pneumo_core.export"


def test_a_two_module_cycle_across_packages_is_found(tmp_path):
    root = _tree(tmp_path, {"pneumo_core/__init__.py": "", "pneumo_core/review.py": "import ui.cards\n",
                            "ui/__init__.py": "", "ui/cards.py": "from pneumo_core.review import rows\n"})
    assert find_cycles(import_graph(root)) == [["pneumo_core.review", "ui.cards"]]


def test_wrong_way_imports_are_found(tmp_path):
    root = _tree(tmp_path, {
        "pneumo_core/__init__.py": "", "pneumo_core/inference/__init__.py": "",
        "pneumo_core/inference/predictor.py": "def f():\n    from pneumo_core.training import trainer\n",
        "pneumo_core/training/__init__.py": "", "pneumo_core/training/trainer.py": "from pneumo_core.cli import main\n",
        "pneumo_core/cli/__init__.py": "from pneumo_core.training import trainer\n",
        "pneumo_core/__main__.py": "from pneumo_core.cli import main\n",
        "ui/__init__.py": "", "ui/cards.py": "import app_pages.home\n",
        "app_pages/__init__.py": "", "app_pages/home.py": "from ui import cards\n",
    })
    found = wrong_way_imports(import_graph(root))
    assert found == [
        "pneumo_core.inference.predictor -> pneumo_core.training.trainer (scoring must not need the training code)",
        "pneumo_core.training.trainer -> pneumo_core.cli (library functions return results; the CLI prints them)",
        "ui.cards -> app_pages.home (pages use ui, not the other way)",
    ]


def test_argparse_and_sys_path_edits_are_found(tmp_path):
    path = _tree(tmp_path, {"x.py": "import sys\nimport argparse\nsys.path.insert(0, 'a')\n"
                                    "sys.path = []\nsys.path[:0] = ['b']\nfrom argparse import ArgumentParser\n"
                                    "print(sys.path)\n"}) / "x.py"
    assert modules_importing(path, "argparse") == [2, 6]
    assert sys_path_edits(path) == [3, 4, 5]


def test_readme_layout_check_sees_missing_and_stale_entries(tmp_path):
    package = tmp_path / "pneumo_core"
    _tree(tmp_path, {"pneumo_core/__init__.py": "", "pneumo_core/config.py": "", "pneumo_core/quiz/__init__.py": "",
                     "pneumo_core/__main__.py": "", "pneumo_core/notes/readme.txt": ""})
    readme = "## Layout\n\n```\napp.py   frame\npneumo_core/   the library\n  config.py  settings\n" \
             "  imaging/   decoding, see docs/ and io.py\nmodels/   shipped\n```\n"
    assert package_entries(package) == {"config.py", "quiz/"}
    assert readme_layout_names(readme) == {"config.py", "imaging/"}


def test_single_letter_aliases_are_found(tmp_path):
    root = _tree(tmp_path, {"pneumo_core/__init__.py": "", "pneumo_core/data.py": "",
                            "pneumo_core/a.py": "from . import data as D\nimport numpy as np\nimport json as j\n"
                                                "from .data import x as y\n"})
    found = single_letter_module_aliases("pneumo_core.a", root / "pneumo_core/a.py", project_files(root))
    assert found == ["1: ... import data as D", "3: ... import json as j"]


def test_size_limits_by_folder():
    assert line_limit("ui/cards.py") == 300 and line_limit("app_pages/home.py") == 300
    assert line_limit("pneumo_core/inference/predictor.py") == 450 and line_limit("app.py") == 60
    assert line_limit("tests/unit/test_app.py") is None
