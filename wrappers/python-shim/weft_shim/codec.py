"""weft's msgpack profile in Python (docs/protocols.md section 0).

Everything goes through the ``msgpack`` library with fixed options, so that
Python and Node read each other's payloads the same way:

* ``use_bin_type=True``: ``bytes``/``bytearray``/``memoryview`` are msgpack bin
  (Node: ``Buffer``), ``str`` is msgpack str. Binary is never base64'd.
* ``raw=False``: msgpack str decodes to ``str``, bin to ``bytes``.
* ``strict_map_key=False``: maps whose keys are not strings (written by Python
  code) can be read back.
* ``timestamp=3`` / ``datetime=True``: the msgpack timestamp extension (-1) is a
  timezone-aware ``datetime`` (Node: ``Date``).
* ext 0x57 is a :class:`BlobRef`; ext 0 is msgpackr's ``undefined`` and
  decodes as ``None``.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Dict, List, Sequence, Tuple, Union

try:
    import msgpack
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        "weft_shim needs the msgpack package: apt-get install python3-msgpack "
        "(Debian/Ubuntu, for /usr/bin/python3) or pip install 'msgpack>=1.0'"
    ) from exc

#: msgpack extension type of a BlobRef.
BLOB_REF_EXT = 0x57
#: msgpackr writes ``undefined`` as fixext 1 of type 0 (body 0x00).
_UNDEFINED_EXT = 0


class BlobRef:
    """A value held in blob storage, standing in for the value inside a payload.

    ``key`` is the storage key of a msgpack blob; ``path`` the keys and indexes
    to walk inside the decoded blob (empty: the whole blob).
    """

    __slots__ = ("key", "path")

    def __init__(self, key: str, path: Sequence[Union[str, int]] = ()) -> None:
        self.key = key
        self.path = list(path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlobRef) and other.key == self.key and other.path == self.path

    def __hash__(self) -> int:
        return hash((self.key, tuple(self.path)))

    def __repr__(self) -> str:
        return "BlobRef(%r, %r)" % (self.key, self.path)


def _default(obj: Any) -> Any:
    if isinstance(obj, BlobRef):
        return msgpack.ExtType(BLOB_REF_EXT, packb([obj.key, list(obj.path)]))
    if isinstance(obj, int):
        raise OverflowError("int %d does not fit msgpack's 64 bits (int64 or uint64)" % obj)
    if isinstance(obj, _dt.datetime):
        raise ValueError(
            "weft cannot encode a datetime without tzinfo; give it one, e.g. dt.replace(tzinfo=timezone.utc)"
        )
    raise TypeError(
        "weft cannot encode a %s.%s as msgpack; use None, bool, int, float, str, bytes, "
        "list, tuple, dict or a timezone-aware datetime (e.g. numpy: arr.tolist() or arr.tobytes())"
        % (type(obj).__module__, type(obj).__qualname__)
    )


def packb(value: Any) -> bytes:
    """Encodes a value as msgpack with weft's options."""
    return msgpack.packb(value, use_bin_type=True, datetime=True, default=_default)


class _Hook:
    """ext_hook that also counts the BlobRefs it met."""

    __slots__ = ("refs",)

    def __init__(self) -> None:
        self.refs = 0

    def __call__(self, code: int, data: bytes) -> Any:
        if code == BLOB_REF_EXT:
            self.refs += 1
            body = unpackb(data)
            if not isinstance(body, list) or not body or not isinstance(body[0], str):
                raise ValueError("malformed BlobRef: expected msgpack [key, path]")
            path = body[1] if len(body) > 1 and body[1] is not None else []
            return BlobRef(body[0], path)
        if code == _UNDEFINED_EXT:
            return None
        return msgpack.ExtType(code, data)


def _unpack(data: bytes, hook: _Hook) -> Any:
    return msgpack.unpackb(
        data, raw=False, strict_map_key=False, use_list=True, timestamp=3, ext_hook=hook
    )


def unpackb(data: bytes) -> Any:
    """Decodes msgpack with weft's options (BlobRef ext values become :class:`BlobRef`)."""
    return _unpack(data, _Hook())


def unpackb_counting(data: bytes) -> Tuple[Any, int]:
    """Decodes msgpack; also returns how many BlobRefs the value holds."""
    hook = _Hook()
    value = _unpack(data, hook)
    return value, hook.refs


class _Missing:
    """What a path that does not exist leads to (Node's ``undefined``)."""

    _instance = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()
_INDEX = re.compile(r"-?[0-9]+\Z")


def get_path(value: Any, path: Sequence[Union[str, int]]) -> Any:
    """Walks a decoded value along keys and indexes, as Node's ``getPath`` does.

    A string step applied to a list is parsed as an index. On a dict a step is
    looked up as it is, then as a string (Node's keys are strings), then a
    decimal string as an int (Python maps with int keys). Returns
    :data:`MISSING` when a step does not exist.
    """
    cur = value
    for step in path:
        if isinstance(cur, (list, tuple)):
            if isinstance(step, bool):
                return MISSING
            if isinstance(step, int):
                i = step
            elif isinstance(step, str) and _INDEX.match(step):
                i = int(step)
            else:
                return MISSING
            if i < 0 or i >= len(cur):
                return MISSING
            cur = cur[i]
        elif isinstance(cur, dict):
            if step in cur:
                cur = cur[step]
            elif not isinstance(step, str) and str(step) in cur:
                cur = cur[str(step)]
            elif isinstance(step, str) and _INDEX.match(step) and int(step) in cur:
                cur = cur[int(step)]
            else:
                return MISSING
        else:
            return MISSING
    return cur


def shape_of(value: Any) -> Dict[str, Any]:
    """``{type, size}`` of a value, as reported in task metadata (common/src/codec.ts ``shapeOf``)."""
    if value is MISSING:
        return {"type": "undefined", "size": 0}
    if value is None:
        return {"type": "null", "size": 0}
    if isinstance(value, bool):
        return {"type": "boolean", "size": 0}
    if isinstance(value, (int, float)):
        return {"type": "number", "size": 0}
    if isinstance(value, str):
        # Node reports String.length: UTF-16 code units.
        return {"type": "string", "size": len(value.encode("utf-16-le")) // 2}
    if isinstance(value, (bytes, bytearray)):
        return {"type": "binary", "size": len(value)}
    if isinstance(value, memoryview):
        return {"type": "binary", "size": value.nbytes}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "size": len(value)}
    if isinstance(value, dict):
        return {"type": "object", "size": len(value)}
    if isinstance(value, BlobRef):
        return {"type": "object", "size": 2}
    return {"type": "object", "size": 0}


def split_save_path(p: str) -> List[str]:
    """A save path ("a.b", "" = whole value) as path steps."""
    return [] if p == "" else p.split(".")
