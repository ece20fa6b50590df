"""The shim against a fake sidecar: the local protocol (docs/protocols.md section 2)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from fake_sidecar import FakeSidecar, task  # noqa: E402

from weft_shim import BlobRef, CodeApiError, run  # noqa: E402
from weft_shim.codec import packb, unpackb  # noqa: E402


class Shim:
    """run() in a thread of this process, against a fake sidecar."""

    def __init__(
        self,
        fake: FakeSidecar,
        start: Callable[..., Any],
        init: Optional[Callable[..., Any]] = None,
        stop: Optional[Callable[..., Any]] = None,
        exit: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.error: Optional[BaseException] = None
        self.returned = threading.Event()

        def body() -> None:
            try:
                run(start, init=init, stop=stop, exit=exit, url=fake.url)
            except BaseException as e:  # noqa: BLE001
                self.error = e
            finally:
                self.returned.set()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()
        fake.wait_connected()


class ProtocolTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeSidecar()
        self.tmp = tempfile.mkdtemp(prefix="weft-shim-test-")
        self.shims: List[Shim] = []

    def tearDown(self) -> None:
        for s in self.shims:
            if not s.returned.is_set():
                try:
                    self.fake.send("exit", {"exitCode": 0})
                except Exception:  # noqa: BLE001
                    pass
                s.returned.wait(5)
        self.fake.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def shim(self, start: Callable[..., Any], **kw: Any) -> Shim:
        s = Shim(self.fake, start, **kw)
        self.shims.append(s)
        return s

    def run_task(self, data: Dict[str, Any], until: str = "done") -> List[Dict[str, Any]]:
        self.fake.send("initialize", data)
        self.fake.send("start", {"taskId": data["taskId"]})
        return self.fake.recv_until(until) if until != "errorMessage" else self.fake.recv_until(until)

    def commands(self, frames: List[Dict[str, Any]]) -> List[str]:
        return [f["command"] for f in frames]


class LifecycleTest(ProtocolTestCase):
    def test_connects_with_the_protocol_query(self) -> None:
        self.shim(lambda args: None)
        self.assertEqual(self.fake.paths, ["/?protocol=1&encoding=msgpack"])

    def test_runs_a_task_and_reports_initialized_started_progress_done(self) -> None:
        def start(args: Dict[str, Any], api: Any) -> Any:
            api.progress(50, "half way")
            return {k: v for k, v in args.items()}

        self.shim(start)
        frames = self.run_task(task("j:1:3", input=[1, "two"], batchIndex=3, attempt=2, nodeName="N"))
        self.assertEqual(self.commands(frames), ["initialized", "started", "progress", "done"])
        self.assertEqual(frames[0]["data"], {"taskId": "j:1:3"})
        self.assertEqual(frames[2]["data"], {"taskId": "j:1:3", "percent": 50.0, "message": "half way"})
        self.assertEqual(
            frames[3]["data"],
            {
                "taskId": "j:1:3",
                "value": {
                    "input": [1, "two"],
                    "jobId": "j",
                    "taskId": "j:1:3",
                    "nodeName": "N",
                    "algorithmName": "alg",
                    "pipelineName": "p",
                    "batchIndex": 3,
                    "attempt": 2,
                    "kind": "pipeline",
                    "env": {},
                },
            },
        )

    def test_task_env_is_visible_during_the_task_and_undone_for_the_next(self) -> None:
        seen: List[Any] = []

        def start(args: Dict[str, Any]) -> Any:
            seen.append((args["env"], os.environ.get("WEFT_EXECUTION_ID"), os.environ.get("HOME")))
            return None

        self.shim(start)
        home = os.environ.get("HOME")
        self.run_task(task("j:0:0", env={"WEFT_EXECUTION_ID": "weft-run-1", "HOME": "/elsewhere"}))
        self.run_task(task("j:0:1"))
        self.assertEqual(seen[0], ({"WEFT_EXECUTION_ID": "weft-run-1", "HOME": "/elsewhere"}, "weft-run-1", "/elsewhere"))
        self.assertEqual(seen[1], ({}, None, home))

    def test_stream_logs_sends_what_the_task_prints_as_log_frames(self) -> None:
        def start(args: Dict[str, Any]) -> Any:
            print("hello", args["input"][0])
            sys.stderr.write("careful\n")
            return 1

        self.shim(start)
        frames = self.run_task(task("j:0:0", input=["there"], streamLogs=True))
        logs = [(f["data"]["stream"], f["data"]["data"]) for f in frames if f["command"] == "log"]
        self.assertEqual(b"".join(d for s, d in logs if s == "stdout"), b"hello there\n")
        self.assertEqual(b"".join(d for s, d in logs if s == "stderr"), b"careful\n")
        self.assertTrue(all(f["data"]["taskId"] == "j:0:0" for f in frames if f["command"] == "log"))
        # Without streamLogs nothing is sent, and the streams are back to normal.
        frames = self.run_task(task("j:0:1", input=["again"]))
        self.assertEqual([f for f in frames if f["command"] == "log"], [])
        self.assertNotIn("_Tee", type(sys.stdout).__name__)

    def test_exit_codes_of_missing_dependencies_permanent_failure_and_any_exit_code(self) -> None:
        from weft_shim import MissingDependencies, PermanentFailure

        class Custom(Exception):
            exit_code = 7

        errors = [MissingDependencies("no input yet"), PermanentFailure("bad config"), Custom("x"), ValueError("v")]

        def start(args: Dict[str, Any]) -> Any:
            raise errors[args["input"][0]]

        self.shim(start)
        got = []
        for i in range(4):
            frames = self.run_task(task(f"j:0:{i}", input=[i]), until="errorMessage")
            got.append((frames[-1]["data"]["error"]["type"], frames[-1]["data"]["error"].get("exitCode")))
        self.assertEqual(
            got, [("MissingDependencies", 20), ("PermanentFailure", 50), ("Custom", 7), ("ValueError", None)]
        )

    def test_start_with_one_parameter_and_tasks_one_after_another(self) -> None:
        self.shim(lambda args: args["input"][0] * 2)
        for i in range(3):
            frames = self.run_task(task("j:0:%d" % i, input=[i]))
            self.assertEqual(frames[-1]["data"], {"taskId": "j:0:%d" % i, "value": i * 2})

    def test_async_start(self) -> None:
        async def start(args: Dict[str, Any]) -> Any:
            return "async " + args["input"][0]

        self.shim(start)
        self.assertEqual(self.run_task(task(input=["ok"]))[-1]["data"]["value"], "async ok")

    def test_a_missing_result_is_nil(self) -> None:
        self.shim(lambda args, api: None)
        done = self.run_task(task())[-1]["data"]
        self.assertIn("value", done)
        self.assertIsNone(done["value"])

    def test_start_waits_for_a_slow_init(self) -> None:
        seen: List[str] = []

        def init(args: Dict[str, Any]) -> None:
            time.sleep(0.3)
            seen.append("init")

        def start(args: Dict[str, Any]) -> str:
            seen.append("start")
            return "ok"

        self.shim(start, init=init)
        frames = self.run_task(task())
        self.assertEqual(self.commands(frames), ["initialized", "started", "done"])
        self.assertEqual(seen, ["init", "start"])

    def test_a_failing_init_fails_the_task_and_the_start_is_ignored(self) -> None:
        ran: List[int] = []

        def init(args: Dict[str, Any]) -> None:
            raise ValueError("bad config")

        self.shim(lambda args: ran.append(1), init=init)
        frames = self.run_task(task(), until="errorMessage")
        self.assertEqual(self.commands(frames), ["errorMessage"])
        err = frames[0]["data"]["error"]
        self.assertEqual((err["type"], err["message"]), ("ValueError", "bad config"))
        self.assertIsNone(self.fake.no_frame())
        self.assertEqual(ran, [])
        # The worker is still good for the next task.
        self.assertEqual(self.commands(self.run_task(task("j:0:1"), until="errorMessage")), ["errorMessage"])

    def test_an_exception_is_a_task_error_with_type_message_and_traceback(self) -> None:
        class Boom(Exception):
            pass

        def helper(x: int) -> None:
            raise Boom("item %d is broken" % x)

        def start(args: Dict[str, Any]) -> None:
            helper(args["input"][0])

        self.shim(start)
        frames = self.run_task(task(input=[7]), until="errorMessage")
        self.assertEqual(self.commands(frames), ["initialized", "started", "errorMessage"])
        err = frames[-1]["data"]["error"]
        self.assertEqual(err["type"], "Boom")
        self.assertEqual(err["message"], "item 7 is broken")
        self.assertTrue(err["stack"].startswith("Traceback (most recent call last):"), err["stack"])
        self.assertIn("test_protocol.py", err["stack"])
        self.assertIn("in helper", err["stack"])
        self.assertIn("Boom: item 7 is broken", err["stack"])
        # The shim's own frames are left out.
        self.assertNotIn("runner.py", err["stack"])

    def test_an_unencodable_result_is_a_task_error(self) -> None:
        self.shim(lambda args: {"s": {1, 2}})
        err = self.run_task(task(), until="errorMessage")[-1]["data"]["error"]
        self.assertEqual(err["type"], "TypeError")
        self.assertIn("cannot encode a builtins.set", err["message"])

    def test_exit_ends_run_and_calls_exit(self) -> None:
        got: List[Any] = []
        s = self.shim(lambda args: None, exit=lambda data: got.append(data))
        self.fake.send("exit", {"exitCode": 0})
        self.assertTrue(s.returned.wait(5))
        self.assertIsNone(s.error)
        self.assertEqual(got, [{"exitCode": 0}])
        self.assertTrue(self.fake.wait_closed(5))

    def test_run_returns_when_the_socket_closes(self) -> None:
        s = self.shim(lambda args: None)
        self.fake.disconnect()
        self.assertTrue(s.returned.wait(5))
        self.assertIsNone(s.error)

    def test_malformed_frames_are_dropped(self) -> None:
        self.shim(lambda args: "fine")
        self.fake.send_raw("a text frame")
        self.fake.send_raw(packb([1, 2]))
        self.fake.send_raw(b"\xc1")
        self.fake.send("nonsense", {})
        self.fake.send("start", {"taskId": "unknown"})
        self.assertEqual(self.run_task(task())[-1]["data"]["value"], "fine")

    def test_without_a_url_run_says_why(self) -> None:
        old = os.environ.pop("WEFT_SOCKET_URL", None)
        try:
            with self.assertRaisesRegex(RuntimeError, "WEFT_SOCKET_URL is not set"):
                run(lambda args: None)
        finally:
            if old is not None:
                os.environ["WEFT_SOCKET_URL"] = old

    def test_an_unreachable_sidecar_is_a_connection_error(self) -> None:
        with self.assertRaisesRegex(ConnectionError, "cannot connect to the sidecar"):
            run(lambda args: None, url="ws://127.0.0.1:1/")


class DataTest(ProtocolTestCase):
    def blob(self, key: str, value: Any) -> Dict[str, Dict[str, str]]:
        path = os.path.join(self.tmp, "blobs", key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(packb(value))
        return {key: {"path": path}}

    def test_blob_refs_are_resolved_anywhere_in_the_input_and_cached(self) -> None:
        storage = self.blob("jobs/j/0/0", [10, 20, {"x": b"\x01\x02", "y": [5]}])
        self.shim(lambda args: args["input"])
        refs = [
            BlobRef("jobs/j/0/0", [1]),
            {"deep": [BlobRef("jobs/j/0/0", ["2", "x"])]},
            BlobRef("jobs/j/0/0", []),
            BlobRef("jobs/j/0/0", [2, "nope"]),
            3,
        ]
        frames = self.run_task(task(input=refs, storage=storage))
        self.assertEqual(
            frames[-1]["data"]["value"],
            [20, {"deep": [b"\x01\x02"]}, [10, 20, {"x": b"\x01\x02", "y": [5]}], None, 3],
        )
        # Blobs are immutable: the next task reads the decoded blob from the cache.
        os.unlink(storage["jobs/j/0/0"]["path"])
        frames = self.run_task(task("j:1:1", input=[BlobRef("jobs/j/0/0", [2, "y", 0])], storage=storage))
        self.assertEqual(frames[-1]["data"]["value"], [5])

    def test_a_ref_to_a_blob_that_was_not_staged_fails_the_task(self) -> None:
        self.shim(lambda args: args["input"])
        frames = self.run_task(task(input=[BlobRef("jobs/j/9/9")]), until="errorMessage")
        err = frames[-1]["data"]["error"]
        self.assertEqual(err["type"], "InputError")
        self.assertIn('"jobs/j/9/9"', err["message"])

    def test_a_large_result_is_written_atomically_and_described_by_its_shape(self) -> None:
        out = os.path.join(self.tmp, "blobs", "jobs", "j", "1", "0")
        result = {"items": list(range(200)), "s": "é😀", "b": b"\x00" * 10}
        self.shim(lambda args: result)
        frames = self.run_task(
            task(
                "j:1:0",
                output={"path": out, "threshold": 100},
                savePaths=["", "items", "s", "b", "nope"],
            )
        )
        done = frames[-1]["data"]
        with open(out, "rb") as f:
            raw = f.read()
        self.assertEqual(unpackb(raw), result)
        self.assertEqual(done["stored"], {"size": len(raw)})
        self.assertNotIn("value", done)
        self.assertEqual(
            done["metadata"],
            {
                "": {"type": "object", "size": 3},
                "items": {"type": "array", "size": 200},
                "s": {"type": "string", "size": 3},
                "b": {"type": "binary", "size": 10},
                "nope": {"type": "undefined", "size": 0},
            },
        )
        self.assertEqual(os.listdir(os.path.dirname(out)), ["0"])  # no temporary file left

    def test_a_large_binary_result_is_stored_as_msgpack_bin(self) -> None:
        out = os.path.join(self.tmp, "big")
        data = bytes(range(256)) * 1024
        self.shim(lambda args: data)
        done = self.run_task(task(output={"path": out, "threshold": 65536}, savePaths=[""]))[-1]["data"]
        with open(out, "rb") as f:
            raw = f.read()
        self.assertEqual(raw[:5], b"\xc6\x00\x04\x00\x00")  # bin 32
        self.assertEqual(unpackb(raw), data)
        self.assertEqual(done["metadata"], {"": {"type": "binary", "size": len(data)}})

    def test_results_up_to_the_threshold_or_without_a_path_are_inline(self) -> None:
        value = "x" * 98  # 100 bytes encoded (str 8)
        self.assertEqual(len(packb(value)), 100)
        self.shim(lambda args: value)
        out = os.path.join(self.tmp, "never")
        done = self.run_task(task(output={"path": out, "threshold": 100}))[-1]["data"]
        self.assertEqual(done, {"taskId": "job-1:0:0", "value": value})
        done = self.run_task(task("j:0:1", output={"threshold": 10}))[-1]["data"]
        self.assertEqual(done["value"], value)
        self.assertFalse(os.path.exists(out))

    def test_types_round_trip_through_the_frames(self) -> None:
        value = {
            "bytes": b"\x00\xff",
            "int64": 2**63 - 1,
            "uint64": 2**64 - 1,
            "neg": -(2**63),
            "float": 1.5,
            "nested": [[{"a": [None, True]}]],
            7: "int key",
        }
        self.shim(lambda args: args["input"][0])
        self.assertEqual(self.run_task(task(input=[value]))[-1]["data"]["value"], value)


class StopTest(ProtocolTestCase):
    def test_stop_calls_stop_and_answers_stopped_once_start_returns(self) -> None:
        calls: List[Any] = []
        started = threading.Event()

        def start(args: Dict[str, Any], api: Any) -> str:
            started.set()
            while not api.stopping:
                time.sleep(0.01)
            api.progress(99, "not sent: the task is stopping")
            return "result that is not sent"

        self.shim(start, stop=lambda args: calls.append(args["taskId"]))
        self.fake.send("initialize", task("j:0:0"))
        self.fake.send("start", {"taskId": "j:0:0"})
        self.assertEqual(self.commands(self.fake.recv_until("started")), ["initialized", "started"])
        self.assertTrue(started.wait(5))
        self.fake.send("stop", {"taskId": "j:0:0", "forceStop": False, "reason": "test"})
        frames = self.fake.recv_until("stopped")
        self.assertEqual(frames, [{"command": "stopped", "data": {"taskId": "j:0:0"}}])
        self.assertEqual(calls, ["j:0:0"])
        self.assertIsNone(self.fake.no_frame())
        # The worker takes the next task.
        self.fake.send("initialize", task("j:0:1"))
        self.fake.send("stop", {"taskId": "j:0:0", "forceStop": False, "reason": "again"})
        self.assertEqual(self.fake.recv_until("stopped")[-1]["data"], {"taskId": "j:0:0"})

    def test_a_blocking_start_does_not_keep_the_stop_from_arriving(self) -> None:
        stop_at: List[float] = []
        returned_at: List[float] = []

        def start(args: Dict[str, Any]) -> None:
            time.sleep(1.0)  # blocks and never looks at the stop
            returned_at.append(time.monotonic())

        self.shim(start, stop=lambda: stop_at.append(time.monotonic()))
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.fake.recv_until("started")
        sent = time.monotonic()
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.assertEqual(self.fake.recv_until("stopped", timeout=5)[-1]["command"], "stopped")
        self.assertLess(stop_at[0] - sent, 0.5)
        self.assertLess(stop_at[0], returned_at[0])  # stop() ran while start() was still running
        self.assertGreaterEqual(time.monotonic(), returned_at[0])

    def test_a_cpu_bound_start_does_not_starve_the_socket(self) -> None:
        stop_at: List[float] = []
        spinning = threading.Event()

        def start(args: Dict[str, Any], api: Any) -> int:
            spinning.set()
            n, t_end = 0, time.monotonic() + 1.5
            while time.monotonic() < t_end:
                n += 1
            return n

        self.shim(start, stop=lambda args: stop_at.append(time.monotonic()))
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.assertTrue(spinning.wait(5))
        sent = time.monotonic()
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.fake.recv_until("stopped", timeout=5)
        self.assertLess(stop_at[0] - sent, 0.5)

    def test_stop_of_an_unknown_task_is_answered_at_once(self) -> None:
        self.shim(lambda args: None)
        self.fake.send("stop", {"taskId": "nope", "forceStop": False, "reason": ""})
        self.assertEqual(self.fake.recv(), {"command": "stopped", "data": {"taskId": "nope"}})

    def test_stop_before_start_means_start_never_runs(self) -> None:
        ran: List[int] = []
        self.shim(lambda args: ran.append(1))
        self.fake.send("initialize", task())
        self.assertEqual(self.fake.recv()["command"], "initialized")
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.assertEqual(self.fake.recv()["command"], "stopped")
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.assertIsNone(self.fake.no_frame())
        self.assertEqual(ran, [])

    def test_an_exception_in_stop_is_logged_and_the_task_still_stops(self) -> None:
        release = threading.Event()

        def stop(args: Dict[str, Any]) -> None:
            release.set()
            raise RuntimeError("stop failed")

        self.shim(lambda args, api: release.wait(5), stop=stop)
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.fake.recv_until("started")
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.assertEqual(self.fake.recv_until("stopped")[-1]["command"], "stopped")

    def test_api_stop_event_wakes_a_waiting_start(self) -> None:
        self.shim(lambda args, api: api.stop_event.wait(10))
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.fake.recv_until("started")
        t0 = time.monotonic()
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.fake.recv_until("stopped")
        self.assertLess(time.monotonic() - t0, 2)


class CodeApiTest(ProtocolTestCase):
    def test_start_algorithm_sends_hkubes_frame_and_returns_the_answer_with_blob_refs_resolved(self) -> None:
        path = os.path.join(self.tmp, "child")
        with open(path, "wb") as f:
            f.write(packb({"big": [1, 2, 3]}))
        self.shim(lambda args, api: api.start_algorithm("child-alg", [1, b"\x00"]))
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        req = self.fake.recv_until("startAlgorithmExecution")[-1]["data"]
        self.assertEqual(
            req,
            {"execId": "job-1:0:0/1", "algorithmName": "child-alg", "input": [1, b"\x00"], "includeResult": True},
        )
        self.fake.send(
            "algorithmExecutionDone",
            {"execId": req["execId"], "response": BlobRef("jobs/c/0/0", ["big"]), "storage": {"jobs/c/0/0": {"path": path}}},
        )
        self.assertEqual(self.fake.recv_until("done")[-1]["data"]["value"], [1, 2, 3])

    def test_subpipelines_in_both_forms_and_a_failing_child(self) -> None:
        def start(args: Dict[str, Any], api: Any) -> Any:
            out = [api.start_stored_subpipeline("stored", {"n": 5})]
            out.append(api.start_raw_subpipeline("raw", [{"nodeName": "E"}], {"x": b"\x01"}, includeResult=False))
            try:
                api.start_raw_subpipeline({"name": "whole", "nodes": []})
            except CodeApiError as e:
                out.append("caught: %s" % e)
            return out

        self.shim(start)
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        req = self.fake.recv_until("startStoredSubPipeline")[-1]["data"]
        self.assertEqual(req["subPipeline"], {"name": "stored", "flowInput": {"n": 5}})
        result = [{"nodeName": "D", "algorithmName": "a", "result": 10}]
        self.fake.send("subPipelineDone", {"subPipelineId": req["subPipelineId"], "response": result, "storage": {}})
        req = self.fake.recv_until("startRawSubPipeline")[-1]["data"]
        self.assertEqual(req["subPipeline"], {"name": "raw", "nodes": [{"nodeName": "E"}], "flowInput": {"x": b"\x01"}})
        self.assertFalse(req["includeResult"])
        self.fake.send("subPipelineDone", {"subPipelineId": req["subPipelineId"], "response": None, "storage": {}})
        req = self.fake.recv_until("startRawSubPipeline")[-1]["data"]
        self.assertEqual(req["subPipeline"], {"name": "whole", "nodes": []})
        self.fake.send("subPipelineError", {"subPipelineId": req["subPipelineId"], "error": "child job x failed: boom"})
        done = self.fake.recv_until("done")[-1]["data"]
        self.assertEqual(done["value"], [result, None, "caught: child job x failed: boom"])

    def test_a_stop_ends_a_call_that_waits_for_its_child(self) -> None:
        seen: List[str] = []

        def start(args: Dict[str, Any], api: Any) -> None:
            try:
                api.start_algorithm("slow")
            except CodeApiError as e:
                seen.append(str(e))

        self.shim(start)
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.fake.recv_until("startAlgorithmExecution")
        self.fake.send("stop", {"taskId": "job-1:0:0", "forceStop": False, "reason": ""})
        self.assertEqual(self.fake.recv_until("stopped")[-1]["data"], {"taskId": "job-1:0:0"})
        self.assertEqual(seen, ["the task was asked to stop"])


if __name__ == "__main__":
    unittest.main()
