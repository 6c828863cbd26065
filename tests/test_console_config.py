"""The [admin] table: defaults, operators, the token and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpo_gateway.config import ADMIN_TOKEN_ENV, ConfigError, load_config
from cpo_gateway.passwords import hash_password, verify_password
from tests.conftest import ROOT, write_config


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.problems


def test_no_admin_table_means_no_admin_listener(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path), {}).admin is None


def test_the_defaults_listen_on_loopback(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="[admin]")
    admin = load_config(path, {}).admin
    assert admin is not None
    assert (admin.enabled, admin.host, admin.port) == (True, "127.0.0.1", 8090)
    assert admin.metrics_on_oioi and not admin.cookie_secure and admin.users == ()


def test_operators_and_the_token_are_read(tmp_path: Path) -> None:
    digest = hash_password("s3cret-pass")
    (tmp_path / "tok").write_text("a-token-of-32-characters-000000\n", encoding="utf-8")
    admin = f'token_file = "tok"\n[[admin.user]]\nname = "alice"\npassword_hash = "{digest}"'
    cfg = load_config(write_config(tmp_path, admin=admin), {})
    assert cfg.admin is not None
    (user,) = cfg.admin.users
    assert user.name == "alice" and verify_password("s3cret-pass", user.password_hash)
    assert cfg.admin.token == "a-token-of-32-characters-000000"
    assert "a-token" not in repr(cfg.admin) and digest not in repr(cfg.admin)
    from_env = load_config(write_config(tmp_path, admin=""), {ADMIN_TOKEN_ENV: "e" * 20})
    assert from_env.admin is not None and from_env.admin.token == "e" * 20


def test_bad_admin_keys_are_named(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("abc", encoding="utf-8")
    admin = """token_file = "short"
        colour = "blue"
        [[admin.user]]
        name = "bob"
        password_hash = "plain-text"
    """
    problems = "\n".join(_problems(write_config(tmp_path, admin=admin)))
    assert "admin.user[0].password_hash: expected an scrypt hash" in problems
    assert "admin.token_file: expected a token of at least 16 characters" in problems
    assert "admin.colour: unknown key" in problems
    missing = "\n".join(_problems(write_config(tmp_path, admin='token_file = "nope"')))
    assert "admin.token_file: expected a readable file" in missing


def test_the_admin_port_differs_from_the_others(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="[admin]\nport = 8080")
    text = path.read_text(encoding="utf-8")
    oioi = text.index("[oioi]")
    text = text[:oioi] + text[oioi:].replace("port = 0", "port = 8080", 1)
    path.write_text(text, encoding="utf-8")
    problems = "\n".join(_problems(path))
    assert "admin.port: expected a port other than oioi.port, found 8080" in problems


def test_the_example_admin_table_loads() -> None:
    text = (ROOT / "config" / "gateway.example.toml").read_text(encoding="utf-8")
    assert "[admin]" in text and "metrics_on_oioi" in text
