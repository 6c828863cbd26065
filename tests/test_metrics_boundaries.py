"""Only cpo_gateway/metrics.py imports prometheus_client: the core and the adapters keep
plain counters and observe latencies through cpo_gateway.timing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cpo_gateway"
ALLOWED = {"metrics.py"}


def importers(root: Path, library: str) -> set[str]:
    """Modules under `root` (relative paths) importing `library` or one of its modules."""
    found: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == library or n.startswith(library + ".") for n in names):
                found.add(path.relative_to(root).as_posix())
    return found


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    assert importers(PACKAGE, "prometheus_client") == ALLOWED


def test_the_check_sees_an_import_in_the_core(tmp_path: Path) -> None:
    (tmp_path / "bridge").mkdir()
    (tmp_path / "bridge" / "core.py").write_text("from prometheus_client.core import Counter\n")
    (tmp_path / "metrics.py").write_text("import prometheus_client\n")
    (tmp_path / "other.py").write_text("import prometheus_clientele\n")
    assert importers(tmp_path, "prometheus_client") == {"bridge/core.py", "metrics.py"}
