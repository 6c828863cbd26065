"""Dependency rules, checked by parsing imports (relative ones resolved to absolute names).

- The core (`cpo_gateway.bridge`) imports from an allow-list: the standard library modules it
  uses, orjson (the station hash is orjson's sorted-keys rendering; a different serialiser
  would change every stored hash), `cpo_gateway.logs` and itself. Anything else (a protocol,
  storage or scheduling library, an adapter, the app) is a violation.
- An adapter (`ADAPTERS`) imports no other adapter, and never the composition modules.
- `app.py` and the cli/composition modules may import everything.
- Only `app.py` (and the core itself) imports the concrete core, `cpo_gateway.bridge.core`:
  every adapter, ops.py and metrics.py see it through their port (`bridge/core_ports.py`).
- The PostgreSQL driver (psycopg) is imported by the storage and the cluster adapters and
  the composition modules only.
- The core and the store name no roaming protocol: no import, identifier or string (a
  docstring included) says OIOI or OCPI or one of OIOI's call names; `_` and `-` count
  alike, so `rfid_post` names rfid-post. The one exception is the schema's history: a
  migration that rewrote the old outbox kinds names them.

Every rule is a function over a package directory, tested here on the real tree and on a
small fake tree that breaks it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "cpo_gateway"
CORE = "bridge"
ADAPTERS = frozenset({"csms", "oioi", "ocpi", "store", "jobs", "console", "cluster"})
# Modules that wire adapters together, and the simulated peers and benchmarks: no adapter
# may import them.
COMPOSITION = frozenset({"app", "partners", "cli", "admin_cli", "__main__", "sim", "bench"})
# What the core may import (a module or any of its submodules).
CORE_ALLOWED_STDLIB = frozenset(
    {
        "__future__", "asyncio", "collections", "dataclasses", "datetime", "decimal", "enum", "hashlib",
        "math", "random", "re", "typing", "uuid",
    }
)  # fmt: skip
CORE_ALLOWED_THIRD_PARTY = frozenset({"orjson"})
CORE_ALLOWED_OWN = frozenset({"cpo_gateway.bridge", "cpo_gateway.logs"})
CONCRETE_CORE = "bridge.core"
# Who may build the concrete core: the composition root.
CONCRETE_CORE_USERS = frozenset({"app"})
# Packages that speak of partners only in the core's words (bridge/owed.py).
NEUTRAL = ("bridge", "store")
PROTOCOL_WORDS = ("oioi", "ocpi")
OIOI_CALLS = (
    "station-post", "connector-post-status", "session-post", "rfid-verify", "rfid-post",
    "session-start", "session-stop",
)  # fmt: skip
_NAMED = re.compile("|".join(re.escape(w) for w in (*PROTOCOL_WORDS, *OIOI_CALLS)))
# (module, name): the schema's history, which no later migration can unwrite.
NEUTRAL_EXCEPTIONS = frozenset(
    ("store/migrations.py", call)
    for call in ("station-post", "connector-post-status", "session-post")
)


def _module_name(pkg: Path, path: Path) -> tuple[str, bool]:
    """The dotted name of `path` under `pkg`, and whether it is a package's `__init__`."""
    rel = path.relative_to(pkg.parent).with_suffix("")
    parts = list(rel.parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def imports_of(pkg: Path, path: Path) -> set[str]:
    """Absolute names `path` imports: `from x import y` gives `x.y` (y may be a module) and
    relative imports are resolved against the module's own package."""
    module, is_init = _module_name(pkg, path)
    package = module if is_init else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                full = f"{base}.{node.module}" if node.module else base
            else:
                full = node.module or ""
            names.add(full)
            names.update(f"{full}.{a.name}" for a in node.names if a.name != "*")
    return names


def _modules(pkg: Path, sub: str) -> Iterator[Path]:
    yield from sorted((pkg / sub).rglob("*.py"))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def core_violations(pkg: Path) -> list[str]:
    root = pkg.name
    own = {root + n.removeprefix("cpo_gateway") for n in CORE_ALLOWED_OWN}
    offenders = []
    for path in _modules(pkg, CORE):
        for name in imports_of(pkg, path):
            top = name.split(".")[0]
            if top == root:
                # `from cpo_gateway import logs` gives `cpo_gateway` and `cpo_gateway.logs`:
                # the second one is judged.
                allowed = name == root or any(_within(name, o) for o in own)
            else:
                allowed = top in CORE_ALLOWED_STDLIB | CORE_ALLOWED_THIRD_PARTY
            if not allowed:
                offenders.append(f"{path.relative_to(pkg)}: {name}")
    return sorted(offenders)


def adapter_violations(pkg: Path) -> list[str]:
    root = pkg.name
    offenders = []
    for adapter in sorted(ADAPTERS):
        if not (pkg / adapter).is_dir():
            continue
        for path in _modules(pkg, adapter):
            for name in imports_of(pkg, path):
                parts = name.split(".")
                if parts[0] != root or len(parts) < 2:
                    continue
                if parts[1] in (ADAPTERS - {adapter}) | COMPOSITION:
                    offenders.append(f"{path.relative_to(pkg)}: {name}")
    return sorted(offenders)


def concrete_core_violations(pkg: Path) -> list[str]:
    """Modules outside the core and the composition root that import the concrete core."""
    root = pkg.name
    concrete = f"{root}.{CONCRETE_CORE}"
    offenders = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        if rel.parts[0] == CORE or rel.with_suffix("").parts[0] in CONCRETE_CORE_USERS:
            continue
        for name in imports_of(pkg, path):
            if _within(name, concrete):
                offenders.append(f"{rel}: {name}")
    return sorted(offenders)


def _words(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every name and string in a module: imports, identifiers (defined,
    used, attributes, arguments, keywords) and string constants, docstrings included."""
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.alias):
            yield line, node.name
            if node.asname:
                yield line, node.asname
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield line, node.module
        elif isinstance(node, ast.Name):
            yield line, node.id
        elif isinstance(node, ast.Attribute):
            yield line, node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield line, node.name
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            yield line, node.arg
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield line, node.value


def protocol_names(pkg: Path) -> list[str]:
    """Where the core or the store names a roaming protocol: "module:line: name"."""
    offenders = set()
    for sub in NEUTRAL:
        for path in _modules(pkg, sub):
            rel = path.relative_to(pkg).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for line, text in _words(tree):
                for found in _NAMED.findall(text.lower().replace("_", "-")):
                    if (rel, found) not in NEUTRAL_EXCEPTIONS:
                        offenders.add((rel, line, found))
    return [f"{rel}:{line}: {found}" for rel, line, found in sorted(offenders)]


# Third-party libraries only some packages (or composition modules) may import.
LIBRARY_OWNERS = {"psycopg": frozenset({"store", "cluster"}) | COMPOSITION}


def library_violations(pkg: Path) -> list[str]:
    """Modules of the product importing a library outside the packages that own it."""
    offenders = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        for name in imports_of(pkg, path):
            owners = LIBRARY_OWNERS.get(name.split(".")[0])
            if owners is not None and rel.with_suffix("").parts[0] not in owners:
                offenders.append(f"{rel}: {name}")
    return sorted(offenders)


def test_only_the_store_and_the_cluster_import_the_postgresql_driver() -> None:
    assert library_violations(PKG) == []


def test_the_library_rule_catches_a_driver_import_elsewhere(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "cluster/bus.py": "import psycopg\nfrom psycopg import sql\n",
            "store/db.py": "import psycopg\n",
            "csms/db.py": "from psycopg import AsyncConnection\n",
            "app.py": "import psycopg.sql\n",
            "ops.py": "import psycopg\n",
        },
    )
    assert library_violations(pkg) == [
        "csms/db.py: psycopg",
        "csms/db.py: psycopg.AsyncConnection",
        "ops.py: psycopg",
    ]


def test_packages_exist() -> None:
    packages = (
        "bridge csms oioi ocpi store jobs console cluster sim sim/charger sim/charger201 sim/emp "
        "sim/ocpi_emsp bench bench/soak"
    )
    for sub in packages.split():
        assert (PKG / sub / "__init__.py").is_file(), sub
    assert not (PKG / "ocpp").exists(), "a cpo_gateway/ocpp package would shadow the library"


def outsider_violations(pkg: Path, sandbox: str) -> list[str]:
    """Imports of anything of ours but itself by the simulated peer `sandbox` (a folder):
    a peer written as an outside party would write it shares no misreading with us."""
    root = pkg.name
    own = f"{root}.{sandbox.replace('/', '.')}"
    offenders = []
    assert (pkg / sandbox).is_dir(), sandbox
    for path in _modules(pkg, sandbox):
        for name in imports_of(pkg, path):
            parts = name.split(".")
            if parts[0] == root and len(parts) > 1 and not _within(name, own):
                offenders.append(f"{path.relative_to(pkg)}: {name}")
    return sorted(offenders)


def test_the_sandbox_emsp_uses_none_of_our_code() -> None:
    assert outsider_violations(PKG, "sim/ocpi_emsp") == []


def test_the_outsider_rule_catches_our_imports(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {})
    (pkg / "sim" / "peer").mkdir(parents=True)
    (pkg / "sim" / "__init__.py").write_text("")
    (pkg / "sim" / "peer" / "__init__.py").write_text("from cpo_gateway.sim.peer.x import Y\n")
    (pkg / "sim" / "peer" / "x.py").write_text(
        "import aiohttp\nfrom cpo_gateway.ocpi import transport\nfrom ... import logs\n"
    )
    assert outsider_violations(pkg, "sim/peer") == [
        "sim/peer/x.py: cpo_gateway.logs",
        "sim/peer/x.py: cpo_gateway.ocpi",
        "sim/peer/x.py: cpo_gateway.ocpi.transport",
    ]


def test_core_imports_only_what_it_is_allowed() -> None:
    assert core_violations(PKG) == []


def test_adapters_do_not_import_each_other() -> None:
    assert adapter_violations(PKG) == []


def test_only_the_composition_root_imports_the_concrete_core() -> None:
    assert concrete_core_violations(PKG) == []


def test_the_core_and_the_store_name_no_roaming_protocol() -> None:
    assert protocol_names(PKG) == []


# --- the rules on a fake tree ---------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "cpo_gateway"
    for rel in ("__init__.py", "logs.py", "app.py", "bridge/__init__.py", "bridge/ports.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    for adapter in ADAPTERS:
        (pkg / adapter).mkdir(exist_ok=True)
        (pkg / adapter / "__init__.py").write_text("")
        (pkg / adapter / "db.py").write_text("")
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    return pkg


CLEAN_CORE = (
    "from __future__ import annotations\nimport asyncio\nfrom collections.abc import Callable\n"
    "from datetime import UTC, datetime\nimport orjson\nfrom cpo_gateway import logs\n"
    "from cpo_gateway.bridge.ports import X\nfrom . import ports\nfrom .ports import Y\n"
)


def test_a_clean_fake_tree_passes(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "bridge/core.py": CLEAN_CORE,
            "csms/server.py": "import websockets\nfrom cpo_gateway.bridge import ports\n"
            "from ..bridge.ports import X\nfrom . import db\n",
            "app.py": "from cpo_gateway.csms import db\nfrom cpo_gateway.store import db as s\n",
        },
    )
    assert core_violations(pkg) == []
    assert adapter_violations(pkg) == []
    assert concrete_core_violations(pkg) == []


def test_core_rule_catches_each_kind_of_import(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "bridge/core.py": CLEAN_CORE
            + "import sqlite3\nimport apscheduler\nfrom ..store import db\n"
            "from cpo_gateway import app\nimport aiohttp.web\nfrom ocpp.v16 import call\n"
            "from .. import csms\n",
            "bridge/sub.py": "from cpo_gateway.console import db\n",
        },
    )
    assert core_violations(pkg) == [
        "bridge/core.py: aiohttp.web",
        "bridge/core.py: apscheduler",
        "bridge/core.py: cpo_gateway.app",
        "bridge/core.py: cpo_gateway.csms",
        "bridge/core.py: cpo_gateway.store",
        "bridge/core.py: cpo_gateway.store.db",
        "bridge/core.py: ocpp.v16",
        "bridge/core.py: ocpp.v16.call",
        "bridge/core.py: sqlite3",
        "bridge/sub.py: cpo_gateway.console",
        "bridge/sub.py: cpo_gateway.console.db",
    ]


def test_adapter_rule_catches_absolute_and_relative_imports(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "csms/server.py": "from ..store import db\nimport cpo_gateway.oioi\n",
            "console/view.py": "from cpo_gateway import app\nfrom ..jobs.db import X\n",
            "store/sub.py": "from cpo_gateway.cli import main\n",
        },
    )
    assert adapter_violations(pkg) == [
        "console/view.py: cpo_gateway.app",
        "console/view.py: cpo_gateway.jobs.db",
        "console/view.py: cpo_gateway.jobs.db.X",
        "csms/server.py: cpo_gateway.oioi",
        "csms/server.py: cpo_gateway.store",
        "csms/server.py: cpo_gateway.store.db",
        "store/sub.py: cpo_gateway.cli",
        "store/sub.py: cpo_gateway.cli.main",
    ]


def test_relative_imports_resolve_to_absolute_names(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {"bridge/x.py": "from ..store import db\nfrom . import ports\n"})
    (pkg / "bridge" / "deep").mkdir()
    (pkg / "bridge" / "deep" / "__init__.py").write_text("from ... import logs\nfrom .. import x\n")
    assert imports_of(pkg, pkg / "bridge" / "x.py") == {
        "cpo_gateway.store",
        "cpo_gateway.store.db",
        "cpo_gateway.bridge",
        "cpo_gateway.bridge.ports",
    }
    assert imports_of(pkg, pkg / "bridge" / "deep" / "__init__.py") == {
        "cpo_gateway",
        "cpo_gateway.logs",
        "cpo_gateway.bridge",
        "cpo_gateway.bridge.x",
    }


def test_concrete_core_rule_catches_adapters_and_top_level_modules(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "bridge/core.py": CLEAN_CORE,
            "bridge/core_ports.py": "",
            "bridge/other.py": "from .core import Core\n",  # the core may use itself
            "app.py": "from cpo_gateway.bridge.core import Core\n",  # the composition root
            "csms/server.py": "from cpo_gateway.bridge.core import Core\n"
            "from cpo_gateway.bridge.core_ports import ChargerSide\n",
            "oioi/server.py": "from ..bridge import core\n",
            "jobs/db.py": "import cpo_gateway.bridge.core\n",
            "ops.py": "from cpo_gateway.bridge.core_ports import OperatorSide\n",
            "metrics.py": "from .bridge.core import Core\n",
        },
    )
    assert concrete_core_violations(pkg) == [
        "csms/server.py: cpo_gateway.bridge.core",
        "csms/server.py: cpo_gateway.bridge.core.Core",
        "jobs/db.py: cpo_gateway.bridge.core",
        "metrics.py: cpo_gateway.bridge.core",
        "metrics.py: cpo_gateway.bridge.core.Core",
        "oioi/server.py: cpo_gateway.bridge.core",
    ]


def test_protocol_rule_catches_imports_identifiers_and_strings(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "bridge/core.py": CLEAN_CORE + "from cpo_gateway.oioi import client\n"
            "import cpo_gateway.ocpi.versions as v\n"
            'KIND = "connector-post-status"\n'
            "def rfid_post(emp): ...\n"
            "class OcpiTerms: ...\n"
            "x = core.session_start(session_stop=1)\n"
            'def f(OIOI_key): """Asks rfid-verify."""\n',
            "store/outbox.py": "SQL = \"SELECT * FROM outbox WHERE kind = 'station-post'\"\n"
            "def g(): return Session_Post\n",
            # The schema's history may name the old kinds, and nothing else.
            "store/migrations.py": "M = (\"UPDATE outbox SET kind = 'cdr' "
            "WHERE kind = 'session-post'\", 'rfid-post')\n",
            "csms/server.py": 'OUTSIDE = "oioi ocpi session-post"\n',  # not the core's
        },
    )
    assert protocol_names(pkg) == [
        "bridge/core.py:10: oioi",
        "bridge/core.py:11: ocpi",
        "bridge/core.py:12: connector-post-status",
        "bridge/core.py:13: rfid-post",
        "bridge/core.py:14: ocpi",
        "bridge/core.py:15: session-start",
        "bridge/core.py:15: session-stop",
        "bridge/core.py:16: oioi",
        "bridge/core.py:16: rfid-verify",
        "store/migrations.py:1: rfid-post",
        "store/outbox.py:1: station-post",
        "store/outbox.py:2: session-post",
    ]


def test_a_neutral_fake_tree_names_no_protocol(tmp_path: Path) -> None:
    pkg = _tree(
        tmp_path,
        {
            "bridge/core.py": CLEAN_CORE + 'KIND = "evse-status"\ndef set_whitelist(emp): ...\n',
            "store/migrations.py": "M = \"UPDATE outbox SET kind = 'cdr' WHERE kind = 'session-post'\"\n",
        },
    )
    assert protocol_names(pkg) == []
