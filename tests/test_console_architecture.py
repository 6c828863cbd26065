"""The console is an adapter: it imports none of the other adapters, nor app/cli/ops, and
reaches the gateway only through its port. Checked by parsing imports, with a self-test on
a tree that breaks the rule."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cpo_gateway"
FORBIDDEN = {"csms", "oioi", "store", "jobs", "app", "cli", "ops", "sim", "bench"}


def _offenders(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "cpo_gateway" and len(parts) > 1 and parts[1] in FORBIDDEN:
                    found.append(f"{path.name}: {name}")
    return found


def test_the_console_imports_no_other_adapter() -> None:
    assert (PKG / "console" / "port.py").is_file()
    assert _offenders(PKG / "console") == []


def test_the_guard_sees_a_console_that_imports_the_store(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import cpo_gateway.csms.connected\nfrom cpo_gateway.store import Store\n",
        encoding="utf-8",
    )
    assert _offenders(tmp_path) == [
        "bad.py: cpo_gateway.csms.connected",
        "bad.py: cpo_gateway.store",
    ]
