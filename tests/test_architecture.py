"""Dependency rules, checked by parsing imports: the core imports no protocol or storage
library, and adapters never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cpo_gateway"
LIBRARIES = {"ocpp", "websockets", "aiohttp", "aiosqlite"}
ADAPTERS = {"csms", "oioi", "store", "jobs"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


def test_packages_exist() -> None:
    for sub in ("bridge", "csms", "oioi", "store", "jobs", "sim"):
        assert (PKG / sub / "__init__.py").is_file(), sub
    assert not (PKG / "ocpp").exists(), "a cpo_gateway/ocpp package would shadow the library"


def test_bridge_imports_no_protocol_or_storage_library() -> None:
    offenders = [
        f"{path.relative_to(PKG)}: {name}"
        for path in _files("bridge")
        for name in _imports(path)
        if name.split(".")[0] in LIBRARIES
        or (name.startswith("cpo_gateway.") and name.split(".")[1] in ADAPTERS | {"app", "sim"})
    ]
    assert offenders == []


def test_adapters_do_not_import_each_other() -> None:
    offenders = []
    for adapter in ADAPTERS:
        for path in _files(adapter):
            for name in _imports(path):
                parts = name.split(".")
                if (
                    parts[0] == "cpo_gateway"
                    and len(parts) > 1
                    and parts[1] in ADAPTERS - {adapter}
                ):
                    offenders.append(f"{path.relative_to(PKG)}: {name}")
                if parts[0] == "cpo_gateway" and len(parts) > 1 and parts[1] in {"app", "cli"}:
                    offenders.append(f"{path.relative_to(PKG)}: {name}")
    assert offenders == []


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import aiosqlite\nfrom cpo_gateway.oioi import server\n")
    assert {"aiosqlite", "cpo_gateway.oioi"} <= _imports(bad)
