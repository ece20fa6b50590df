"""``python3 -m weft_shim``: the algorithm process for ``env: python``.

Loads the entry point file (WEFT_ALGORITHM_ENTRY, default ``main.py``) from
the algorithm's directory (WEFT_ALGORITHM_PATH, default the working
directory), takes its ``start`` and optional ``init``, ``stop`` and ``exit``,
and serves tasks with :func:`weft_shim.run` until the sidecar goes away.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from types import ModuleType
from typing import Any, Optional


def _die(message: str) -> "None":
    sys.stderr.write("weft_shim: %s\n" % message)
    sys.stderr.flush()
    sys.exit(1)


def load_entry(path: str, entry: str) -> ModuleType:
    """Imports the algorithm's entry point file as a module (its directory first on sys.path)."""
    file = os.path.abspath(os.path.join(path, entry))
    if os.path.isdir(file) and os.path.exists(os.path.join(file, "__init__.py")):
        file = os.path.join(file, "__init__.py")
    elif not os.path.exists(file) and os.path.exists(file + ".py"):
        file += ".py"
    if not os.path.isfile(file):
        raise FileNotFoundError(
            "the algorithm's entry point %s does not exist (WEFT_ALGORITHM_PATH=%s, WEFT_ALGORITHM_ENTRY=%s)"
            % (file, path, entry)
        )
    for d in (os.path.dirname(file), os.path.abspath(path)):
        if d not in sys.path:
            sys.path.insert(0, d)
    name = os.path.splitext(os.path.basename(file))[0]
    if name == "__init__":
        name = os.path.basename(os.path.dirname(file))
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError("cannot import %s" % file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _own(module: ModuleType, name: str) -> Optional[Any]:
    """module.name if it is a function the module defines itself (``from sys import exit`` is not a callback)."""
    fn = getattr(module, name, None)
    if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
        return fn
    return None


def main() -> None:
    path = os.environ.get("WEFT_ALGORITHM_PATH") or os.getcwd()
    entry = os.environ.get("WEFT_ALGORITHM_ENTRY") or "main.py"
    try:
        from . import runner
    except ImportError as e:
        _die(str(e))
        return
    try:
        module = load_entry(path, entry)
    except BaseException:  # noqa: BLE001 - a failing import is reported and ends the process
        sys.stderr.write("weft_shim: cannot load the algorithm from %s:\n" % os.path.join(path, entry))
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    if runner.served:
        # The entry point called run() itself while it was imported; that has ended.
        sys.exit(0)
    start = getattr(module, "start", None)
    if not callable(start):
        _die("%s does not define a start(args, api) function" % getattr(module, "__file__", entry))
        return
    init = getattr(module, "init", None)
    stop = getattr(module, "stop", None)
    runner.run(
        start,
        init=init if callable(init) else None,
        stop=stop if callable(stop) else None,
        exit=_own(module, "exit"),
    )
    sys.stdout.flush()
    sys.stderr.flush()
    if runner.busy():
        # The socket closed while start() was still running: the process must end anyway.
        sys.stderr.write("weft_shim: the socket closed while a task was still running; exiting\n")
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
