"""A minimal websocket client over a raw asyncio Protocol, for the load generator.

The load generator must cost far less per message than the server it measures, so it skips
the `websockets` client: it writes the upgrade request itself, sends every frame with an
all-zero mask (a valid key that makes masking free) and parses the server's unmasked frames
with a few slices. Good enough for a loopback server; not a general websocket client.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_ZERO_MASK = b"\x00\x00\x00\x00"
_MAX_FRAME = 64 * 1024 * 1024


class HandshakeError(Exception):
    """The server did not answer the upgrade with 101 Switching Protocols."""


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (mask key 0: XOR with zero leaves the payload as is)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + _ZERO_MASK + payload


def upgrade_request(host: str, port: int, path: str, subprotocol: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    ).encode()


class RawWebsocket(asyncio.Protocol):
    """One client connection. `on_message` gets every text or binary message's bytes."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._upgraded = False
        self._fragments = bytearray()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.status_line = ""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(exc or "closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._upgraded:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            self.status_line = head.split("\r\n", 1)[0]
            if " 101 " not in self.status_line + " ":
                self.opened.set_exception(HandshakeError(self.status_line))
                self.abort()
                return
            self._upgraded = True
            self.opened.set_result(None)
            # Frames that came with the 101 (a server's first Call) wait until whoever awaits
            # `opened` holds this connection and can answer them.
            asyncio.get_running_loop().call_soon(self._parse)
            return
        self._parse()

    # -- frames ------------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            if n > _MAX_FRAME:
                self.abort()
                return
            mask = b""
            if b1 & 0x80:
                mask = bytes(buf[pos : pos + 4])
                pos += 4
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            del buf[: pos + n]
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if not fin:
                self._fragments += payload
                return
            if self._fragments:
                payload = bytes(self._fragments) + payload
                self._fragments.clear()
            self._on_message(payload)
        elif opcode == OP_PING:
            self._write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self._write(encode_frame(OP_CLOSE, payload[:2]))
            if self._transport is not None:
                self._transport.close()

    # -- sending -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def send_text(self, payload: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("the websocket is closed")
        self._transport.write(encode_frame(OP_TEXT, payload))

    def close(self, code: int = 1000) -> None:
        self._write(encode_frame(OP_CLOSE, struct.pack("!H", code)))
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (a network cut)."""
        if self._transport is not None:
            self._transport.abort()


async def open_websocket(
    host: str,
    port: int,
    path: str,
    on_message: Callable[[bytes], None],
    *,
    subprotocol: str = "ocpp1.6",
    timeout: float = 30.0,  # noqa: ASYNC109
) -> RawWebsocket:
    """Connect and upgrade; raises HandshakeError, OSError or TimeoutError."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, proto = await loop.create_connection(lambda: RawWebsocket(on_message), host, port)
        assert proto._transport is not None
        proto._transport.write(upgrade_request(host, port, path, subprotocol))
        try:
            await proto.opened
        except BaseException:
            proto.abort()
            raise
    return proto
