"""``python3 -m weft_shim`` as the sidecar starts it: a process of its own, against a fake sidecar."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from typing import Dict, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_ROOT = os.path.dirname(HERE)
sys.path.insert(0, SHIM_ROOT)
sys.path.insert(0, HERE)

from fake_sidecar import FakeSidecar, task  # noqa: E402


class MainTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeSidecar()
        self.dir = tempfile.mkdtemp(prefix="weft-shim-main-")
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]

    def tearDown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            for s in (self.proc.stdout, self.proc.stderr):
                if s is not None:
                    s.close()
        self.fake.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name: str, code: str) -> None:
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(code))

    def spawn(self, entry: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:  # type: ignore[type-arg]
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join(p for p in (SHIM_ROOT, os.environ.get("PYTHONPATH")) if p)
        e["WEFT_SOCKET_URL"] = self.fake.url
        e["WEFT_ALGORITHM_PATH"] = self.dir
        e.pop("WEFT_ALGORITHM_ENTRY", None)
        if entry is not None:
            e["WEFT_ALGORITHM_ENTRY"] = entry
        e.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weft_shim"],
            cwd=self.dir,
            env=e,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return self.proc

    def finish(self, timeout: float = 10) -> "tuple[int, str]":
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()

    def test_loads_start_init_and_stop_from_main_py(self) -> None:
        self.write("helper.py", "def double(x):\n    return 2 * x\n")
        self.write(
            "main.py",
            """
            from helper import double
            from sys import exit  # not a callback: the module did not define it
            inits = []

            def init(args):
                inits.append(args["taskId"])

            def start(args):
                return {"doubled": double(args["input"][0]), "inits": inits, "name": __name__}
            """,
        )
        self.spawn()
        self.fake.wait_connected()
        self.fake.send("initialize", task("j:0:0", input=[21]))
        self.fake.send("start", {"taskId": "j:0:0"})
        done = self.fake.recv_until("done")[-1]["data"]
        self.assertEqual(done["value"], {"doubled": 42, "inits": ["j:0:0"], "name": "main"})
        self.fake.send("exit", {"exitCode": 0})
        code, err = self.finish()
        self.assertEqual(code, 0, err)

    def test_entry_point_in_a_subdirectory(self) -> None:
        self.write("pkg/algo.py", "def start(args, api):\n    api.progress(1, 'x')\n    return 'sub'\n")
        self.spawn(entry="pkg/algo.py")
        self.fake.wait_connected()
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.assertEqual(self.fake.recv_until("done")[-1]["data"]["value"], "sub")

    def test_exits_when_the_socket_closes_even_while_start_blocks(self) -> None:
        self.write("main.py", "import time\n\ndef start(args):\n    time.sleep(3600)\n")
        self.spawn()
        self.fake.wait_connected()
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.fake.recv_until("started")
        t0 = time.monotonic()
        self.fake.disconnect()
        code, err = self.finish(timeout=10)
        self.assertEqual(code, 0, err)
        self.assertLess(time.monotonic() - t0, 5)

    def test_sys_exit_in_start_ends_the_process(self) -> None:
        self.write("main.py", "import sys\n\ndef start(args):\n    sys.exit(3)\n")
        self.spawn()
        self.fake.wait_connected()
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        code, err = self.finish()
        self.assertEqual(code, 3)
        self.assertIn("sys.exit(3)", err)

    def test_an_entry_point_without_start_fails_to_load(self) -> None:
        self.write("main.py", "def begin(args):\n    pass\n")
        self.spawn()
        code, err = self.finish()
        self.assertEqual(code, 1)
        self.assertIn("does not define a start(args, api) function", err)

    def test_an_import_error_is_reported_with_its_traceback(self) -> None:
        self.write("main.py", "import no_such_module_here\n\ndef start(args):\n    pass\n")
        self.spawn()
        code, err = self.finish()
        self.assertEqual(code, 1)
        self.assertIn("cannot load the algorithm", err)
        self.assertIn("ModuleNotFoundError: No module named 'no_such_module_here'", err)

    def test_a_missing_entry_point_is_named(self) -> None:
        self.spawn(entry="nope.py")
        code, err = self.finish()
        self.assertEqual(code, 1)
        self.assertIn("nope.py does not exist", err)

    def test_an_entry_point_that_calls_run_itself(self) -> None:
        self.write(
            "main.py",
            """
            from weft_shim import run

            def start(args):
                return "own main"

            run(start)
            """,
        )
        self.spawn()
        self.fake.wait_connected()
        self.fake.send("initialize", task())
        self.fake.send("start", {"taskId": "job-1:0:0"})
        self.assertEqual(self.fake.recv_until("done")[-1]["data"]["value"], "own main")
        self.fake.send("exit", {"exitCode": 0})
        code, err = self.finish()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.fake.connections, 1)


if __name__ == "__main__":
    unittest.main()
