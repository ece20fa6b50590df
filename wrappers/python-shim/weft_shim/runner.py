"""run(): serves tasks from the sidecar over the local protocol (docs/protocols.md section 2).

The calling thread reads the WebSocket (websockets' protocol on a plain socket,
see connection.py). The algorithm's ``init`` and ``start`` run in a worker
thread, so a ``start`` that blocks (or spins) never keeps the shim from reading
the next frame: a ``stop`` is seen, and ``stop()`` called, while ``start`` is
still running. ``stop()`` runs in a thread of its own. Any thread sends.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import queue
import secrets
import sys
import threading
import traceback
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional

import msgpack

from .codec import MISSING, BlobRef, get_path, packb, shape_of, split_save_path, unpackb, unpackb_counting
from .connection import Connection

#: Version stated in the connection URL (``?protocol=1``).
LOCAL_PROTOCOL_VERSION = 1
_SHIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: True once run() has connected in this process (the entry point called run() itself).
served = False
_last: "Optional[_Shim]" = None


def _log(message: str) -> None:
    try:
        sys.stderr.write("weft_shim: %s\n" % message)
        sys.stderr.flush()
    except Exception:  # pragma: no cover - stderr closed
        pass


class InputError(Exception):
    """A task's input could not be resolved (a BlobRef to a blob that is not there)."""


def _arity(fn: Callable[..., Any]) -> Optional[int]:
    """How many positional arguments fn takes; None when it takes any number."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class _Callback:
    """A user callback called with as many of its arguments as it accepts (start(args) or start(args, api))."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.n = _arity(fn)

    def __call__(self, *args: Any) -> Any:
        result = self.fn(*(args if self.n is None else args[: self.n]))
        if inspect.isawaitable(result):
            # async def start(...): run it to completion in this (worker) thread.
            result = asyncio.run(_await(result))
        return result


async def _await(aw: Any) -> Any:
    return await aw


class _Tee:
    """A text stream that also sends what is written as `log` frames (tasks started with streamLogs)."""

    def __init__(self, inner: Any, stream: str, task_id: str, send: Callable[..., None]) -> None:
        self._inner = inner
        self._stream = stream
        self._task_id = task_id
        self._send = send

    def write(self, text: str) -> int:
        if text:
            self._send(_frame("log", {"taskId": self._task_id, "stream": self._stream, "data": text.encode("utf-8")}))
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _tee_output(task_id: str, send: Callable[..., None]) -> Any:
    """Tees sys.stdout and sys.stderr for one task; returns the streams to put back."""
    saved = (sys.stdout, sys.stderr)
    sys.stdout = _Tee(sys.stdout, "stdout", task_id, send)
    sys.stderr = _Tee(sys.stderr, "stderr", task_id, send)
    return saved


class MissingDependencies(Exception):
    """Raise from start when the inputs the task needs do not exist yet.

    A scheduled workflow retries it later (Styx's exit code 20) without spending
    its retry budget; in a pipeline it is an ordinary failure.
    """

    exit_code = 20


class PermanentFailure(Exception):
    """Raise from start for a failure that retrying cannot fix (Styx's exit code 50): not retried."""

    exit_code = 50


_task_env_backup: Dict[str, Optional[str]] = {}


def _apply_task_env(env: Any) -> None:
    """Gives the task's own environment (e.g. WEFT_EXECUTION_ID) to os.environ, undoing the previous task's."""
    for k, v in _task_env_backup.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _task_env_backup.clear()
    if isinstance(env, dict):
        for k, v in env.items():
            if isinstance(k, str) and isinstance(v, str):
                _task_env_backup[k] = os.environ.get(k)
                os.environ[k] = v


def failure(exc: BaseException) -> Dict[str, Any]:
    """The local protocol's error map: exception type, message, traceback and exit code if any."""
    tb = exc.__traceback__
    # Leave out the shim's own frames above the algorithm's, when there are any of the algorithm's.
    t = tb
    while t is not None and os.path.normpath(os.path.abspath(t.tb_frame.f_code.co_filename)).startswith(_SHIM_DIR):
        t = t.tb_next
    if t is not None:
        tb = t
    stack = "".join(traceback.format_exception(type(exc), exc, tb))
    message = str(exc)
    out: Dict[str, Any] = {"type": type(exc).__name__, "message": message, "stack": stack}
    # Any exception may carry an exit code (exit_code attribute), not only the two classes above.
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        out["exitCode"] = code
    return out


class _BlobCache:
    """Decoded input blobs by key (blobs are immutable), least recently used out first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self.items: "OrderedDict[str, Any]" = OrderedDict()
        self.sizes: Dict[str, int] = {}
        self.lock = threading.Lock()

    def load(self, key: str, path: str) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        with open(path, "rb") as f:
            raw = f.read()
        value = unpackb(raw)
        if len(raw) <= self.limit:
            with self.lock:
                if key not in self.items:
                    self.items[key] = value
                    self.sizes[key] = len(raw)
                    self.bytes += len(raw)
                    while self.bytes > self.limit:
                        old, _ = self.items.popitem(last=False)
                        self.bytes -= self.sizes.pop(old)
        return value


def _resolve(value: Any, storage: Dict[str, Any], cache: _BlobCache) -> Any:
    """Replaces every BlobRef inside value with the staged blob's content at its path."""
    if isinstance(value, BlobRef):
        staged = storage.get(value.key)
        if not isinstance(staged, dict) or not isinstance(staged.get("path"), str):
            raise InputError('input references blob "%s" that the sidecar did not stage' % value.key)
        found = get_path(cache.load(value.key, staged["path"]), value.path)
        return None if found is MISSING else found
    if isinstance(value, list):
        return [_resolve(v, storage, cache) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, storage, cache) for k, v in value.items()}
    return value


def write_atomic(path: str, data: bytes) -> None:
    """Writes a blob file whole or not at all: a temporary file beside it, then a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = "%s.%s.tmp" % (path, secrets.token_hex(6))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _frame(command: str, data: Dict[str, Any]) -> bytes:
    return packb({"command": command, "data": data})


def _done_inline(task_id: str, encoded_value: bytes) -> bytes:
    """The frame done{taskId, value}, with the value's msgpack encoding put in place (not encoded twice)."""
    p = msgpack.Packer(use_bin_type=True)
    return b"".join(
        (
            p.pack_map_header(2),
            packb("command"),
            packb("done"),
            packb("data"),
            p.pack_map_header(2),
            packb("taskId"),
            packb(task_id),
            packb("value"),
            encoded_value,
        )
    )


class Api:
    """What ``start`` can do while its task runs (the second argument of ``start(args, api)``)."""

    def __init__(self, task: "_Task", shim: "_Shim") -> None:
        self._task = task
        self._shim = shim

    def progress(self, percent: float, message: str = "") -> None:
        """Reports progress (0-100) to ``weft exec watch`` and the job's watchers."""
        if self._task.stopping:
            return
        self._shim.send(
            _frame(
                "progress",
                {"taskId": self._task.task_id, "percent": float(percent), "message": str(message)},
            )
        )

    @property
    def stopping(self) -> bool:
        """True once the task has been asked to stop; long loops should check it and return."""
        return self._task.stopping

    @property
    def stop_event(self) -> threading.Event:
        """Set when the task is asked to stop: ``api.stop_event.wait(timeout)`` sleeps until then."""
        return self._task.stop_event

    # -- the code API (HKube's hkubeApi): each call runs a child job and blocks until it ends --

    def start_algorithm(self, name: str, input: Optional[List[Any]] = None, includeResult: bool = True) -> Any:
        """Runs one algorithm as a child job; returns its result (None with includeResult=False).

        Raises :class:`CodeApiError` when the child job fails.
        """
        return self._shim.call(
            self._task,
            "startAlgorithmExecution",
            "execId",
            {"algorithmName": name, "input": [] if input is None else list(input), "includeResult": includeResult},
        )

    def start_stored_subpipeline(
        self, name: str, flowInput: Optional[Dict[str, Any]] = None, includeResult: bool = True
    ) -> Any:
        """Runs a stored pipeline as a child job; returns its results, a list of
        ``{nodeName, algorithmName, result}`` (HKube's shape), or None with includeResult=False."""
        sub: Dict[str, Any] = {"name": name}
        if flowInput is not None:
            sub["flowInput"] = flowInput
        return self._shim.call(
            self._task, "startStoredSubPipeline", "subPipelineId", {"subPipeline": sub, "includeResult": includeResult}
        )

    def start_raw_subpipeline(
        self,
        name: Any,
        nodes: Optional[List[Dict[str, Any]]] = None,
        flowInput: Optional[Dict[str, Any]] = None,
        options: Optional[Dict[str, Any]] = None,
        webhooks: Optional[Dict[str, Any]] = None,
        includeResult: bool = True,
    ) -> Any:
        """Runs a pipeline given in full as a child job; returns its results like start_stored_subpipeline.

        HKube's form ``(name, nodes, flowInput, options, webhooks, includeResult)``, or a whole
        descriptor dict as the first argument: ``start_raw_subpipeline({"name": ..., "nodes": [...]})``.
        """
        if isinstance(name, dict):
            sub = dict(name)
        else:
            sub = {"name": name, "nodes": nodes or []}
            if flowInput is not None:
                sub["flowInput"] = flowInput
            if options is not None:
                sub["options"] = options
            if webhooks is not None:
                sub["webhooks"] = webhooks
        return self._shim.call(
            self._task, "startRawSubPipeline", "subPipelineId", {"subPipeline": sub, "includeResult": includeResult}
        )


class CodeApiError(Exception):
    """A child job started with the code API did not complete (its error is the message)."""


class _Call:
    """A code API call waiting for its answer."""

    def __init__(self, task: "_Task") -> None:
        self.task = task
        self.done = threading.Event()
        self.response: Any = None
        self.storage: Dict[str, Any] = {}
        self.refs = 0
        self.error: Optional[str] = None


class _Task:
    def __init__(self, data: Dict[str, Any], refs: int) -> None:
        self.data = data
        self.refs = refs
        self.task_id: str = data["taskId"]
        self.args: Dict[str, Any] = {
            "input": [],
            "jobId": data.get("jobId", ""),
            "taskId": self.task_id,
            "nodeName": data.get("nodeName", ""),
            "algorithmName": data.get("algorithmName", ""),
            "pipelineName": data.get("pipelineName", ""),
            "batchIndex": data.get("batchIndex", -1),
            "attempt": data.get("attempt", 1),
            "kind": data.get("kind", "pipeline"),
            "env": data.get("env") if isinstance(data.get("env"), dict) else {},
        }
        self.started = False
        self.stopping = False
        # init (and input) done in the reading thread: there was no init to run and no blob to read.
        self.initialized_here = False
        # A job for this task went to the worker thread.
        self.submitted = False
        self.go = threading.Event()  # start arrived, or stop did
        self.stop_event = threading.Event()
        self.finished = threading.Event()  # nothing of the task runs any more


class _Worker(threading.Thread):
    """The thread that runs init and start, one task after another."""

    def __init__(self) -> None:
        super().__init__(name="weft-task", daemon=True)
        self.jobs: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
        self.busy = False

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            self.busy = True
            try:
                job()
            finally:
                self.busy = False


class _Shim:
    def __init__(
        self,
        start: Callable[..., Any],
        init: Optional[Callable[..., Any]],
        stop: Optional[Callable[..., Any]],
        exit: Optional[Callable[..., Any]],
        url: str,
        cache_bytes: int,
    ) -> None:
        self.start = _Callback(start)
        self.init = _Callback(init) if init else None
        self.stop = _Callback(stop) if stop else None
        self.exit = _Callback(exit) if exit else None
        self.url = url
        self.cache = _BlobCache(cache_bytes)
        self.tasks: Dict[str, _Task] = {}
        self.tasks_lock = threading.Lock()
        self.worker = _Worker()
        self.conn: Optional[Connection] = None
        self.calls: Dict[str, _Call] = {}
        self.call_seq = 0

    def send(self, *frames: bytes) -> None:
        """Sends frames to the sidecar, in order, in one write; from any thread."""
        if self.conn is not None:
            self.conn.send(*frames)

    # -- the code API ----------------------------------------------------------

    def call(self, t: "_Task", command: str, id_field: str, data: Dict[str, Any]) -> Any:
        """Sends a code API request for task t and blocks until the sidecar answers."""
        c = _Call(t)
        with self.tasks_lock:
            if t.stopping:
                raise CodeApiError("the task is stopping")
            self.call_seq += 1
            request_id = "%s/%d" % (t.task_id, self.call_seq)
            self.calls[request_id] = c
        payload = dict(data)
        payload[id_field] = request_id
        self.send(_frame(command, payload))
        c.done.wait()
        if c.error is not None:
            raise CodeApiError(c.error)
        if c.refs:
            return _resolve(c.response, c.storage, self.cache)
        return c.response

    def _answer(self, request_id: Any, data: Dict[str, Any], refs: int, error: Optional[str]) -> None:
        with self.tasks_lock:
            c = self.calls.pop(request_id, None)
        if c is None:
            return
        if error is not None:
            c.error = error
        else:
            c.response = data.get("response")
            c.storage = data.get("storage") or {}
            c.refs = refs
        c.done.set()

    def _fail_calls(self, reason: str, task: "Optional[_Task]" = None) -> None:
        """Ends waiting calls (of one task, or all) with an error."""
        with self.tasks_lock:
            ids = [i for i, c in self.calls.items() if task is None or c.task is task]
            failed = [self.calls.pop(i) for i in ids]
        for c in failed:
            c.error = reason
            c.done.set()

    # -- the task, in the worker thread ------------------------------------

    def _fail(self, t: _Task, exc: BaseException) -> None:
        if isinstance(exc, SystemExit):
            # sys.exit() in algorithm code ends the process, as process.exit() does in Node: a crash.
            code = exc.code if isinstance(exc.code, int) else 1
            _log("the algorithm called sys.exit(%r); exiting" % (exc.code,))
            sys.stdout.flush()
            os._exit(code)
        if not t.stopping:
            self.send(_frame("errorMessage", {"taskId": t.task_id, "error": failure(exc)}))

    def _prepare(self, t: _Task) -> None:
        """Resolves the task's input (BlobRefs read from the blob files) and runs init."""
        raw_input = t.data.get("input")
        if not isinstance(raw_input, list):
            raw_input = [] if raw_input is None else [raw_input]
        storage = t.data.get("storage") or {}
        t.args["input"] = _resolve(raw_input, storage, self.cache) if t.refs else raw_input
        if self.init:
            self.init(t.args)

    def _run_task(self, t: _Task) -> None:
        """The whole task in the worker thread: input, init, then start once it is asked for."""
        try:
            try:
                self._prepare(t)
            except BaseException as e:  # noqa: BLE001
                self._fail(t, e)
                return
            initialized = _frame("initialized", {"taskId": t.task_id})
            if t.go.is_set():
                # start is already here (it comes right behind initialize): both frames in one write.
                pending: "tuple[bytes, ...]" = (initialized,)
            else:
                self.send(initialized)
                pending = ()
            # start may arrive before init finished: it runs only after a successful init.
            t.go.wait()
            if t.stopping or not t.started:
                if pending:
                    self.send(*pending)
                return
            self.send(*pending, _frame("started", {"taskId": t.task_id}))
            self._start_body(t)
        finally:
            self._finished(t)

    def _run_start(self, t: _Task) -> None:
        try:
            self._start_body(t)
        finally:
            self._finished(t)

    def _start_body(self, t: _Task) -> None:
        """start, and its result or error."""
        tees = _tee_output(t.task_id, self.send) if t.data.get("streamLogs") is True else None
        try:
            result = self.start(t.args, Api(t, self))
        except BaseException as e:  # noqa: BLE001
            self._fail(t, e)
            return
        finally:
            if tees is not None:
                sys.stdout, sys.stderr = tees
        if t.stopping:
            return
        try:
            self._send_result(t, result)
        except BaseException as e:  # noqa: BLE001
            self._fail(t, e)

    def _send_result(self, t: _Task, result: Any) -> None:
        encoded = packb(result)
        output = t.data.get("output") or {}
        path = output.get("path")
        threshold = output.get("threshold", 64 * 1024)
        if path and len(encoded) > threshold:
            # Large results go straight to the shared volume; only their shape travels.
            write_atomic(path, encoded)
            metadata = {p: shape_of(get_path(result, split_save_path(p))) for p in t.data.get("savePaths") or []}
            self.send(_frame("done", {"taskId": t.task_id, "stored": {"size": len(encoded)}, "metadata": metadata}))
        else:
            self.send(_done_inline(t.task_id, encoded))

    def _finished(self, t: _Task) -> None:
        """Nothing of the task runs any more (and it has sent its last frame)."""
        with self.tasks_lock:
            if self.tasks.get(t.task_id) is t and not t.stopping:
                del self.tasks[t.task_id]
        t.finished.set()

    # -- frames, in the reading thread --------------------------------------

    def _on_initialize(self, data: Any, refs: int) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("taskId"), str):
            _log("dropped an initialize frame without a taskId")
            return
        t = _Task(data, refs)
        _apply_task_env(t.args["env"])
        with self.tasks_lock:
            self.tasks[t.task_id] = t
        if self.init is None and not refs:
            # Nothing to read and no init to run: the task is initialized at once, here,
            # and the worker thread is needed only for start (one thread hop per task).
            self._prepare(t)
            t.initialized_here = True
            self.send(_frame("initialized", {"taskId": t.task_id}))
        else:
            t.submitted = True
            self.worker.jobs.put(lambda: self._run_task(t))

    def _on_start(self, task_id: Any) -> None:
        with self.tasks_lock:
            t = self.tasks.get(task_id)
        if t is None or t.started or t.stopping:
            return
        t.started = True
        if t.initialized_here:
            self.send(_frame("started", {"taskId": t.task_id}))
            t.submitted = True
            self.worker.jobs.put(lambda: self._run_start(t))
        else:
            t.go.set()

    def _on_stop(self, task_id: Any) -> None:
        with self.tasks_lock:
            t = self.tasks.get(task_id)
            if t is not None and t.stopping:
                return
            if t is not None:
                t.stopping = True
        if t is None:
            self.send(_frame("stopped", {"taskId": task_id}))
            return
        t.stop_event.set()
        t.go.set()
        # A start() waiting for a child job returns now rather than when the child ends.
        self._fail_calls("the task was asked to stop", t)
        if not t.submitted:
            t.finished.set()  # initialized here and never started: nothing runs
        threading.Thread(target=self._stop_task, args=(t,), name="weft-stop", daemon=True).start()

    def _stop_task(self, t: _Task) -> None:
        if self.stop:
            try:
                self.stop(t.args)
            except BaseException as e:  # noqa: BLE001
                _log("stop() failed: %s: %s" % (type(e).__name__, e))
        # The worker is reusable only once start has returned.
        t.finished.wait()
        with self.tasks_lock:
            if self.tasks.get(t.task_id) is t:
                del self.tasks[t.task_id]
        self.send(_frame("stopped", {"taskId": t.task_id}))

    def _on_exit(self, data: Any) -> None:
        if self.exit:
            try:
                self.exit(data)
            except Exception as e:  # noqa: BLE001
                _log("exit() failed: %s: %s" % (type(e).__name__, e))

    def serve(self) -> None:
        global served
        sep = "&" if "?" in self.url else "?"
        full = "%s%sprotocol=%d&encoding=msgpack" % (self.url, sep, LOCAL_PROTOCOL_VERSION)
        try:
            conn = Connection(full)
        except Exception as e:
            raise ConnectionError("run(): cannot connect to the sidecar at %s: %s" % (self.url, e)) from e
        self.conn = conn
        served = True
        self.worker.start()
        try:
            while True:
                messages = conn.receive()
                if messages is None:
                    return
                # Frames that arrived together are answered together (initialized + started: one write).
                conn.cork()
                try:
                    for raw in messages:
                        if self._on_message(raw):
                            return
                finally:
                    conn.uncork()
        finally:
            self._fail_calls("the sidecar went away before the child job ended")
            conn.close()

    def _on_message(self, raw: Any) -> bool:
        """Handles one frame; True when the sidecar said exit."""
        if not isinstance(raw, bytes):
            _log("dropped a text frame from the sidecar")
            return False
        try:
            frame, refs = unpackb_counting(raw)
            if not isinstance(frame, dict) or not isinstance(frame.get("command"), str):
                raise ValueError('expected a map with a string "command"')
        except Exception as e:  # noqa: BLE001
            _log("dropped a malformed frame from the sidecar: %s" % e)
            return False
        command, data = frame["command"], frame.get("data") or {}
        if not isinstance(data, dict):
            data = {}
        if command == "initialize":
            self._on_initialize(data, refs)
        elif command == "start":
            self._on_start(data.get("taskId"))
        elif command == "stop":
            self._on_stop(data.get("taskId"))
        elif command == "exit":
            self._on_exit(data)
            return True
        elif command in ("algorithmExecutionDone", "subPipelineDone"):
            self._answer(data.get("execId", data.get("subPipelineId")), data, refs, None)
        elif command in ("algorithmExecutionError", "subPipelineError"):
            self._answer(data.get("execId", data.get("subPipelineId")), data, 0, str(data.get("error", "")))
        return False

    def busy(self) -> bool:
        with self.tasks_lock:
            return self.worker.busy or bool(self.tasks)


def busy() -> bool:
    """Whether the last run() ended with algorithm code still running (a start() that did not return)."""
    return _last is not None and _last.busy()


def run(
    start: Callable[..., Any],
    init: Optional[Callable[..., Any]] = None,
    stop: Optional[Callable[..., Any]] = None,
    exit: Optional[Callable[..., Any]] = None,
    *,
    url: Optional[str] = None,
    cache_bytes: int = 256 * 1024 * 1024,
) -> None:
    """Serves tasks from the sidecar until it says exit or the socket closes; then returns.

    ``start(args, api)`` or ``start(args)`` runs once per task and its return
    value is the task's result. ``init(args)`` runs before each task's start (an
    exception fails the task), ``stop(args)`` when the running task is asked to
    stop, ``exit(data)`` when the sidecar ends the worker. ``args`` is a dict:
    input, jobId, taskId, nodeName, algorithmName, pipelineName, batchIndex,
    attempt, kind.

    ``url`` defaults to the environment variable WEFT_SOCKET_URL, which the
    sidecar sets. ``cache_bytes`` bounds the decoded input blobs kept for reuse.
    """
    global _last
    if not callable(start):
        raise TypeError("run(): start must be a function start(args, api) or start(args)")
    target = url or os.environ.get("WEFT_SOCKET_URL")
    if not target:
        raise RuntimeError(
            "run(): no sidecar to talk to; WEFT_SOCKET_URL is not set (algorithms are started by weft-sidecar)"
        )
    shim = _Shim(start, init, stop, exit, target, cache_bytes)
    _last = shim
    # A start() that never returned lives on in a daemon thread: it does not keep the process alive.
    shim.serve()


__all__ = ["Api", "CodeApiError", "InputError", "run", "failure", "write_atomic", "served"]
