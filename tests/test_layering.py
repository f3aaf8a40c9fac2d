"""Imports go one way: the serving path (app -> dialog -> {ilm, retrieval}) never imports measuring
code (``*/eval/``) or ``training``, nothing imports ``app`` or ``training`` from below, and no
product module imports ``tests``. Checked on the source (every import, also those inside
functions) and on what importing the serving entry points actually loads."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "dialog", "ilm", "retrieval", "training")
MEASURING = ("app.eval", "dialog.eval", "ilm.eval", "retrieval.eval", "training")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_measuring(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in MEASURING)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` statement in the file names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def product_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


SERVING = [p for p in product_files() if not is_measuring(module_name(p))]


def test_the_serving_path_has_modules_and_the_measuring_code_its_own_folders():
    names = {module_name(p) for p in SERVING}
    assert {"app.main", "app.ui", "dialog.manager", "dialog.batch", "ilm.score", "retrieval.index"} <= names
    measuring = {module_name(p) for p in product_files()} - names
    assert {"dialog.eval.evaluate", "dialog.eval.simulator", "app.eval.loadtest", "retrieval.eval.ann",
            "retrieval.eval.report", "ilm.eval.backends", "training.bench_offline"} <= measuring


@pytest.mark.parametrize("path", SERVING, ids=lambda p: str(p.relative_to(ROOT)))
def test_serving_module_imports_no_measuring_code(path):
    bad = sorted(m for m in imported_modules(path) if is_measuring(m) or m.split(".")[0] == "tests")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path):
    """app is imported by nobody else; training only by itself; dialog not by ilm or retrieval."""
    own = module_name(path).split(".")[0]
    allowed = {"app": set(PACKAGES), "training": {"training", "ilm", "retrieval", "dialog"},
               "dialog": {"dialog", "ilm", "retrieval"}, "ilm": {"ilm", "retrieval"}, "retrieval": {"retrieval"}}
    bad = sorted(m for m in imported_modules(path)
                 if m.split(".")[0] in PACKAGES and m.split(".")[0] not in allowed[own] or m.split(".")[0] == "tests")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_loading_the_serving_entry_points_loads_no_measuring_code():
    code = ("import sys, app.main, app.ui, dialog.batch, dialog.runnable; "
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"})
    loaded = [m for m in out.stdout.split() if m.split(".")[0] in PACKAGES]
    assert "dialog.manager" in loaded
    assert not [m for m in loaded if is_measuring(m)], loaded
