"""The WebSocket to the sidecar: websockets' Sans-I/O client protocol on a plain socket.

The websockets library does all of the WebSocket protocol (handshake, framing,
masking, control frames, closing); this module only moves bytes between it and
a blocking TCP socket. One thread reads; any thread may send (a lock keeps the
protocol object and the socket in order). Sending needs no event loop, so a
task's result leaves from the thread that computed it, in one write.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, List, Optional

try:
    from websockets.frames import Opcode
    from websockets.uri import parse_uri

    try:  # websockets >= 11
        from websockets.client import ClientProtocol as _ClientProtocol
    except ImportError:  # websockets 10 (Debian 12's python3-websockets 10.4)
        from websockets.client import ClientConnection as _ClientProtocol  # type: ignore[attr-defined,no-redef]
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        "weft_shim needs the websockets package: apt-get install python3-websockets "
        "(Debian/Ubuntu, for /usr/bin/python3) or pip install 'websockets>=10.4'"
    ) from exc

_RECV_BYTES = 256 * 1024


class Connection:
    """A WebSocket client connection carrying binary messages."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        wsuri = parse_uri(url)
        if wsuri.secure:
            raise ValueError("the sidecar's socket is plain ws://, not %s" % url)
        self._lock = threading.Lock()
        self._corked = False
        self._closed = False
        self._fragments: List[bytes] = []
        self._text = False
        self._pending: List[bytes] = []
        self._early: List[Any] = []
        self._sock = socket.create_connection((wsuri.host, wsuri.port), timeout=timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # No message size limit: frames can be large (docs/protocols.md 2.1).
            self._protocol = _ClientProtocol(wsuri, max_size=None)
            self._protocol.send_request(self._protocol.connect())
            self._flush()
            self._handshake()
            self._sock.settimeout(None)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self) -> None:
        while True:
            data = self._sock.recv(_RECV_BYTES)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
            self._flush()
            for i, event in enumerate(events):
                if not hasattr(event, "opcode"):  # the handshake response
                    exc = getattr(self._protocol, "handshake_exc", None)
                    if exc is not None:
                        raise ConnectionError("the WebSocket handshake failed: %s" % exc)
                    self._early = list(events[i + 1 :])
                    return
            if not data:
                raise ConnectionError("the sidecar closed the connection during the handshake")

    # -- sending, from any thread ---------------------------------------

    def _flush(self) -> None:
        """Writes what the protocol has queued (call with the lock held, or before other threads exist)."""
        chunks = self._protocol.data_to_send()
        if not chunks or self._corked:
            if chunks:
                self._pending.extend(chunks)
            return
        self._write(chunks)

    def _write(self, chunks: List[bytes]) -> None:
        eof = b"" in chunks
        data = b"".join(chunks)
        try:
            if data:
                self._sock.sendall(data)
            if eof:
                self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._closed = True

    def send(self, *messages: bytes) -> bool:
        """Sends binary messages, in order, in one write; False when the connection is closed."""
        with self._lock:
            if self._closed or self._protocol.state.name != "OPEN":
                return False
            for m in messages:
                self._protocol.send_binary(m)
            self._flush()
            return not self._closed

    def cork(self) -> None:
        """Holds what is sent (by any thread) until :meth:`uncork`, to write it at once."""
        with self._lock:
            self._corked = True
            self._pending = []

    def uncork(self) -> None:
        with self._lock:
            self._corked = False
            pending, self._pending = self._pending, []
            if pending:
                self._write(pending)

    # -- receiving, in one thread -----------------------------------------

    def receive(self) -> Optional[List[bytes]]:
        """The next binary messages (those that arrived together); None once the connection is closed.

        Text messages are returned as str, which the caller drops.
        """
        while True:
            if self._early:
                events, self._early = self._early, []
            else:
                if self._closed:
                    return None
                try:
                    data = self._sock.recv(_RECV_BYTES)
                except OSError:
                    data = b""
                with self._lock:
                    if data:
                        self._protocol.receive_data(data)
                    else:
                        self._protocol.receive_eof()
                    events = self._protocol.events_received()
                    self._flush()
                if not data:
                    self._closed = True
            messages: List[Any] = []
            for frame in events:
                op = frame.opcode
                if op in (Opcode.BINARY, Opcode.TEXT, Opcode.CONT):
                    self._fragments.append(frame.data)
                    if op != Opcode.CONT:
                        self._text = op == Opcode.TEXT
                    if frame.fin:
                        body = b"".join(self._fragments)
                        self._fragments = []
                        messages.append(body.decode("utf-8", "replace") if self._text else body)
                elif op == Opcode.CLOSE:
                    self._closed = True
            if messages:
                return messages
            if self._closed:
                return None

    def close(self) -> None:
        """Closes the connection: a close frame, then the socket (the server ends TCP first, briefly awaited)."""
        with self._lock:
            if not self._closed and self._protocol.state.name == "OPEN":
                try:
                    self._protocol.send_close(1000)
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
                self._corked = False
                self._flush()
            self._closed = True
        try:
            self._sock.settimeout(1.0)
            while self._sock.recv(_RECV_BYTES):
                pass
        except OSError:
            pass
        finally:
            self._sock.close()
