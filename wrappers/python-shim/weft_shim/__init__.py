"""weft_shim: run Python algorithm code in a weft worker.

Two ways in, as with HKube's Python wrapper:

* ``python3 -m weft_shim`` (what the sidecar runs for ``env: python``) loads
  ``start(args, api)`` (or ``start(args)``) and the optional ``init(args)`` and
  ``stop(args)`` from the algorithm's entry point file (default ``main.py``).
* Code with its own main calls :func:`run`::

      from weft_shim import run

      def start(args, api):
          api.progress(50, "half way")
          return sum(args["input"][0])

      if __name__ == "__main__":
          run(start)
"""

from .codec import BLOB_REF_EXT, BlobRef, packb, unpackb
from .runner import Api, CodeApiError, InputError, MissingDependencies, PermanentFailure, run

__version__ = "0.1.0"

__all__ = [
    "Api",
    "BLOB_REF_EXT",
    "BlobRef",
    "CodeApiError",
    "InputError",
    "MissingDependencies",
    "PermanentFailure",
    "packb",
    "run",
    "unpackb",
    "__version__",
]
