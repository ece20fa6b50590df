"""A fake sidecar for the shim's tests: the WebSocket server side of the local protocol.

It runs an asyncio websockets server in a thread of its own and offers a
blocking API to the tests: send a frame, receive the next one.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Dict, List, Optional

import websockets

from weft_shim.codec import packb, unpackb


class FakeSidecar:
    def __init__(self) -> None:
        self.frames: "queue.Queue[Any]" = queue.Queue()
        self.paths: List[str] = []
        self.connections = 0
        self._ws: Any = None
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake sidecar did not start")

    # -- the server thread ---------------------------------------------

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await websockets.serve(
            self._handler, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = "ws://127.0.0.1:%d/" % port
        self._ready.set()

    async def _handler(self, ws: Any, path: str = "") -> None:
        self.connections += 1
        # websockets 10 has ws.path; newer versions ws.request.path.
        self.paths.append(getattr(ws, "path", None) or getattr(getattr(ws, "request", None), "path", path))
        self._ws = ws
        self._connected.set()
        try:
            async for raw in ws:
                self.frames.put(raw if isinstance(raw, str) else unpackb(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._closed.set()

    # -- the test's side ---------------------------------------------------

    def wait_connected(self, timeout: float = 10) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError("the shim did not connect")

    def wait_closed(self, timeout: float = 10) -> bool:
        return self._closed.wait(timeout)

    def send_raw(self, data: Any) -> None:
        self.wait_connected()
        asyncio.run_coroutine_threadsafe(self._ws.send(data), self._loop).result(10)

    def send(self, command: str, data: Dict[str, Any]) -> None:
        self.send_raw(packb({"command": command, "data": data}))

    def recv(self, timeout: float = 10) -> Dict[str, Any]:
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no frame from the shim within %s s" % timeout) from None

    def recv_until(self, command: str, timeout: float = 10) -> List[Dict[str, Any]]:
        """Frames up to and including the first with this command."""
        out = []
        while True:
            f = self.recv(timeout)
            out.append(f)
            if f.get("command") == command:
                return out

    def no_frame(self, within: float = 0.3) -> Optional[Dict[str, Any]]:
        try:
            return self.frames.get(timeout=within)
        except queue.Empty:
            return None

    def disconnect(self) -> None:
        """Closes the connection from the sidecar's side."""
        if self._ws is not None:
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(10)

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()


def task(task_id: str = "job-1:0:0", input: Any = None, **extra: Any) -> Dict[str, Any]:
    """An initialize frame's data, as the Node sidecar builds it."""
    d: Dict[str, Any] = {
        "taskId": task_id,
        "jobId": task_id.split(":")[0],
        "nodeName": "A",
        "algorithmName": "alg",
        "pipelineName": "p",
        "batchIndex": -1,
        "input": [] if input is None else input,
        "storage": {},
        "output": {"threshold": 65536},
        "savePaths": [],
        "attempt": 1,
        "kind": "pipeline",
    }
    d.update(extra)
    return d
