"""The package stays easy to read: no function longer than about 40 lines without a reason
written beside it (a ``# long: <why>`` comment on the line above its ``def``)."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchbench.spec.config import ROOT

MAX_LINES = 40


def long_functions() -> list[str]:
    out = []
    for path in sorted((ROOT / "benchbench").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES and not lines[first - 2].strip().startswith("# long:"):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_long_function_without_a_reason():
    assert long_functions() == []


def test_every_package_is_installed():
    """A non-editable install (``pip install .`` on a cluster) ships every subpackage: each
    directory of benchbench/ with an ``__init__.py`` is listed in pyproject's packages."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "benchbench").rglob("__init__.py")}
    assert found - listed == set(), f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


def _lint_imports(cwd, pythonpath):
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(exe), "--no-cache", "--no-logo", str(cwd / ".importlinter")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_floors_hold_and_a_planted_forbidden_import_breaks_them(tmp_path):
    """The import-linter contracts (.importlinter, in `make lint`) pass on the package, and fail on
    a copy with one forbidden import planted in the workflow side (spec imports torch) and one
    upward import (protocol imports the rank)."""
    ok = _lint_imports(ROOT, ROOT)
    assert ok.returncode == 0, ok.stdout[-3000:]
    shutil.copytree(ROOT / "benchbench", tmp_path / "benchbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    job = tmp_path / "benchbench" / "spec" / "job.py"
    job.write_text(job.read_text() + "\n\ndef _planted():\n    import torch\n\n    return torch\n")
    record = tmp_path / "benchbench" / "protocol" / "record.py"
    record.write_text(
        record.read_text() + "\n\ndef _planted():\n    from benchbench.rank import gate\n\n    return gate\n"
    )
    custom = tmp_path / "benchbench" / "models" / "custom.py"  # top level: imported by every study load
    custom.write_text(
        custom.read_text().replace("import importlib.util\n", "import importlib.util\n\nimport torch\n", 1)
    )
    broken = _lint_imports(tmp_path, tmp_path)
    assert broken.returncode != 0
    assert "benchbench.spec.job -> torch" in broken.stdout
    assert "benchbench.protocol.record -> benchbench.rank.gate" in broken.stdout
    assert "benchbench.models.custom -> torch" in broken.stdout


def test_a_module_allowed_to_reach_torch_imports_it_inside_a_function_only():
    """An ``X -> torch`` line of ``ignore_imports`` (.importlinter) drops the whole edge, so it
    would also hide a module-level import: each such X imports torch inside functions only."""
    allowed = re.findall(r"^\s*(benchbench[\w.]*) -> torch$", (ROOT / ".importlinter").read_text(), re.M)
    assert allowed == ["benchbench.launch.torchrun"]
    for module in allowed:
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
        assert not [n for n in names if n == "torch" or n.startswith("torch.")], module


def documented_modules(text: str) -> set[str]:
    """Every module named in docs/ARCHITECTURE.md's "Modules" section, as a path: the folder of the
    ``### `benchbench/...` `` heading above it, joined with each ``**`name.py`**`` of a list line."""
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    out, folder = set(), None
    for line in section.splitlines():
        if line.startswith("### `"):
            folder = line.split("`")[1]
        elif line.startswith("- ") and folder:
            out |= {folder + name for name in re.findall(r"\*\*`([\w/]+\.py)`\*\*", line)}
    return out


def test_architecture_doc_lists_every_module_and_no_other():
    """docs/ARCHITECTURE.md names each module of the package under its folder, once the tree
    changes the page must too (``__init__.py`` files are the folders themselves)."""
    package = {str(p.relative_to(ROOT)) for p in (ROOT / "benchbench").rglob("*.py") if p.name != "__init__.py"}
    documented = documented_modules((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert sorted(package - documented) == [], "modules missing from docs/ARCHITECTURE.md"
    assert sorted(documented - package) == [], "docs/ARCHITECTURE.md names modules that do not exist"


def test_the_documented_module_list_sees_a_missing_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert "benchbench/rank/gate.py" in documented_modules(text)
    assert "benchbench/rank/gate.py" not in documented_modules(text.replace("- **`gate.py`**", "- gate"))


def test_every_module_path_the_docs_name_exists():
    """A path ``benchbench/…/x.py`` in the README, docs/, benchmarks/ (README and scripts), the
    workflow's rules and schemas, scripts/, a study file, examples/, the tests or the package's own
    docstrings names a module that exists: a move updates the prose with the code."""
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages += [*sorted((ROOT / "workflow").rglob("*.yaml")), *sorted((ROOT / "workflow").rglob("*.smk"))]
    pages += [*sorted((ROOT / "scripts").glob("*")), *sorted((ROOT / "config").rglob("*.yaml"))]
    pages += sorted((ROOT / "benchbench").rglob("*.py"))  # docstrings and descriptions
    pages += [*sorted((ROOT / "examples").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    pages += sorted((ROOT / "tests").rglob("*.py"))
    stale = [
        f"{page.relative_to(ROOT)}: {path}"
        for page in pages
        for path in sorted(set(re.findall(r"benchbench/[\w/]+\.py", page.read_text())))
        if not (ROOT / path).is_file()
    ]
    assert stale == []


def import_cycles(graph: Any) -> list[list[str]]:
    """The package's import circles (strongly connected sets of two or more modules), counting
    imports inside functions too, from grimp's graph (import-linter's own)."""
    modules = sorted(m for m in graph.modules if m.startswith("benchbench"))
    edges = {
        m: sorted(t for t in graph.find_modules_directly_imported_by(m) if t.startswith("benchbench")) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for m in modules:
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles():
    import grimp

    assert import_cycles(grimp.build_graph("benchbench")) == []


def test_the_cycle_finder_sees_a_circle():
    imports = {"benchbench.a": {"benchbench.b"}, "benchbench.b": {"benchbench.c"}, "benchbench.c": {"benchbench.a"}}

    class Graph:  # a -> b -> c -> a, and d alone
        modules = frozenset({*imports, "benchbench.d"})

        def find_modules_directly_imported_by(self, m):
            return imports.get(m, set())

    assert import_cycles(Graph()) == [["benchbench.a", "benchbench.b", "benchbench.c"]]
