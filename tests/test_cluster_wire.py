"""What nodes say to each other is read as outside input: anything either parses as one of
our messages or is refused with an error naming the field; and the [cluster] table."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.bridge.model import AuthStatus
from cpo_gateway.cluster import wire
from cpo_gateway.cluster.control import SIGNATURES, read_call
from cpo_gateway.cluster.rpc import CallRefused
from cpo_gateway.config import ConfigError, load_config
from cpo_gateway.config_storage import STORAGE_URL_ENV
from tests.conftest import write_config

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SHAPED = st.fixed_dictionaries(
    {"t": st.sampled_from(["call", "reply", "here", "auth", "ref", "x"])},
    optional={
        "id": JSON | st.text(max_size=10),
        "from": JSON | st.text(max_size=10),
        "kind": st.sampled_from(["control", "admin", "other"]) | JSON,
        "body": JSON,
        "wait_s": st.floats(allow_nan=True) | st.integers() | JSON,
        "result": JSON,
        "node": st.text(max_size=10),
        "on": JSON,
        "off": JSON,
    },
)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(payload: bytes) -> None:
    try:
        wire.parse(payload)
    except wire.BadMessage as exc:
        assert str(exc).split(":")[0]  # names a field


@given(SHAPED)
def test_message_shaped_objects_parse_or_name_the_field(d: dict[str, Any]) -> None:
    try:
        message = wire.parse(json.dumps(d))
    except wire.BadMessage as exc:
        field = str(exc).split(":")[0]
        assert field in d or field in ("t", "id", "from", "kind", "body", "wait_s", "result",
                                       "node", "on", "off", "payload"), exc  # fmt: skip
        return
    assert wire.parse(wire.render(message)) == message  # what we send reads back the same


@given(
    st.sampled_from(sorted(SIGNATURES)),
    st.text(min_size=1, max_size=20),
    st.lists(JSON, max_size=5),
)
def test_control_calls_read_or_are_refused(method: str, cp: str, args: list[Any]) -> None:
    try:
        got = read_call({"m": method, "cp": cp, "a": args})
    except CallRefused as exc:
        assert str(exc).startswith("body.")
        return
    assert got[0] == method and got[1] == cp and len(got[2]) == len(SIGNATURES[method])


def test_a_local_list_call_reads_back_its_entries() -> None:
    method, cp, args = read_call(
        {
            "m": "send_local_list",
            "cp": "CP-1",
            "a": [3, [["AA11", "Accepted"], ["BB22", "Blocked"]]],
        }
    )
    assert (method, cp) == ("send_local_list", "CP-1")
    assert args == [3, [("AA11", AuthStatus.ACCEPTED), ("BB22", AuthStatus.BLOCKED)]]
    with pytest.raises(CallRefused, match=r"body.a\[1\] of send_local_list: unknown status"):
        read_call({"m": "send_local_list", "cp": "CP-1", "a": [3, [["AA11", "Maybe"]]]})


def test_channels_are_identifiers_of_any_node_id() -> None:
    ids = ["gw-1", "a" * 200, "ünïcode node", "gw-1 "]
    channels = {wire.channel_of(n) for n in ids}
    assert len(channels) == len(ids)
    assert all(len(c) < 64 and c.isidentifier() for c in channels)


# --- the [cluster] table --------------------------------------------------------------------


def test_the_node_id_defaults_to_the_host_name_and_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert load_config(path, {}).cluster.node_id == socket.gethostname()
    assert load_config(path, {"CPO_GATEWAY_NODE_ID": "gw-7"}).cluster.node_id == "gw-7"
    assert not load_config(path, {}).cluster.enabled


def test_a_cluster_on_sqlite_is_refused_by_check_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='[cluster]\nnode_id = "gw-1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert any("cluster: a cluster needs PostgreSQL storage" in p for p in caught.value.problems)
    done = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "check-config", "-c", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert "a cluster needs PostgreSQL storage" in done.stderr


def test_cluster_keys_are_checked(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, extra='[cluster]\nnode_id = "gw 1"\nheartbeat_s = 5.0\nalive_s = 6.0\nx = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    text = "\n".join(caught.value.problems)
    assert "cluster.node_id: expected letters, digits and . _ : -" in text
    assert "cluster.alive_s: expected at least twice heartbeat_s (10), found 6" in text
    assert "cluster.x: unknown key" in text


def test_a_postgresql_storage_url_puts_the_node_in_a_cluster(tmp_path: Path) -> None:
    url = "postgresql://gw@127.0.0.1:5432/gateway"
    path = write_config(tmp_path, extra='[cluster]\nnode_id = "gw-2"\nalive_s = 12\n')
    cluster = load_config(path, {STORAGE_URL_ENV: url}).cluster
    assert cluster.enabled and cluster.url == url
    assert (cluster.node_id, cluster.alive_s, cluster.heartbeat_s) == ("gw-2", 12.0, 2.0)
