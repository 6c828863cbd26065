"""Console sessions: expiry, logout, the CSRF check and the bound on open sessions."""

from __future__ import annotations

import pytest

from cpo_gateway.console.auth import MAX_SESSIONS, Authenticator, LoginRefused, Operator, csrf_ok
from cpo_gateway.passwords import hash_password

TOKEN = "a-shared-console-token-0001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_session_expires_and_a_logout_ends_it() -> None:
    clock = Clock()
    auth = Authenticator([Operator("alice", hash_password("pw-alice"))], "", ttl_s=60, clock=clock)
    session = await auth.login("alice", "pw-alice", "127.0.0.1")
    assert auth.session(session.id) is session and session.operator == "alice"
    clock.now += 59
    assert auth.session(session.id) is session
    clock.now += 2
    assert auth.session(session.id) is None  # expired
    again = await auth.login("alice", "pw-alice", "127.0.0.1")
    auth.logout(again.id)
    assert auth.session(again.id) is None
    assert auth.session("") is None and auth.session("made-up") is None


async def test_the_token_logs_in_under_any_name_and_a_user_needs_his_password() -> None:
    auth = Authenticator([Operator("alice", hash_password("pw-alice"))], TOKEN, ttl_s=60)
    assert (await auth.login("bob", TOKEN, "127.0.0.1")).operator == "bob (token)"
    with pytest.raises(LoginRefused):
        await auth.login("alice", TOKEN, "127.0.0.1")  # alice has a password of her own
    with pytest.raises(LoginRefused):
        await auth.login("bob", "", "127.0.0.1")
    nobody = Authenticator([], "", ttl_s=60)
    assert not nobody.configured
    with pytest.raises(LoginRefused):
        await nobody.login("x", "", "127.0.0.1")


async def test_csrf_tokens_belong_to_their_session() -> None:
    auth = Authenticator([], TOKEN, ttl_s=60)
    one, two = await auth.login("a", TOKEN, "s"), await auth.login("b", TOKEN, "s")
    assert csrf_ok(one, one.csrf) and not csrf_ok(one, two.csrf)
    assert not csrf_ok(one, None) and not csrf_ok(one, "")


async def test_open_sessions_are_bounded() -> None:
    clock = Clock()
    auth = Authenticator([], TOKEN, ttl_s=3600, clock=clock)
    first = await auth.login("first", TOKEN, "s")
    for i in range(MAX_SESSIONS):
        clock.now += 0.001
        await auth.login(f"op{i}", TOKEN, "s")
    assert auth.session(first.id) is None  # the oldest made room
