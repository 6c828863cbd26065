"""A fresh database per test on the server CPO_GATEWAY_TEST_PG names (until the harness)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from cpo_gateway.cluster import schema


@pytest.fixture
def pg_url() -> Iterator[str]:
    server = os.environ.get("CPO_GATEWAY_TEST_PG")
    if not server:
        pytest.skip("no PostgreSQL (CPO_GATEWAY_TEST_PG)")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(schema.POSTGRES)
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
