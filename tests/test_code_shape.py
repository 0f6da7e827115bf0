"""The package stays easy to read: no function longer than about 40 lines without a reason
written beside it (a ``# long: <why>`` comment on the line above its ``def``)."""

import ast

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
