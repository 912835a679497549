"""Layout of the package: modules and functions stay small, and the parts the workflow imports
while it builds the DAG (the method registry, the study config) import no torch.

A module may exceed MAX_MODULE_LINES, or a function/method MAX_FUNCTION_LINES, only if its
docstring says why with ``Long: <reason>``.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "itermask"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
LONG = re.compile(r"\bLong:\s*\S")


def _modules() -> list[tuple[Path, ast.Module, int]]:
    mods = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        mods.append((path, ast.parse(text, filename=str(path)), len(text.splitlines())))
    return mods


def _excused(node: ast.AST) -> bool:
    return bool(LONG.search(ast.get_docstring(node) or ""))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_package_is_found():
    mods = _modules()
    assert len(mods) > 20
    assert any(p.name == "study.py" for p, _, _ in mods)


def test_modules_have_at_most_300_lines():
    too_long = [f"{_name(path)}: {n} lines" for path, tree, n in _modules()
                if n > MAX_MODULE_LINES and not _excused(tree)]
    assert not too_long, (f"modules over {MAX_MODULE_LINES} lines (split them, or give the reason in the "
                          f"module docstring as 'Long: ...'):\n" + "\n".join(too_long))


def test_functions_have_at_most_60_lines():
    too_long = []
    for path, tree, _ in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - first + 1
            if n > MAX_FUNCTION_LINES and not _excused(node):
                too_long.append(f"{_name(path)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or give the reason in "
                          f"the docstring as 'Long: ...'):\n" + "\n".join(too_long))


def test_the_long_marker_needs_a_reason():
    assert LONG.search("Long: the loop is one procedure of the paper")
    assert not LONG.search("Long:") and not LONG.search("Long:   \n") and not LONG.search("Longer: x")


def test_method_registry_and_study_config_import_no_torch():
    code = ("import sys; import itermask.methods; import itermask.config.study; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchio', 'monai')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
