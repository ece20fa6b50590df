"""weft's msgpack profile in Python: types, BlobRef, paths and shapes."""

from __future__ import annotations

import datetime
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack  # noqa: E402

from weft_shim.codec import (  # noqa: E402
    BLOB_REF_EXT,
    MISSING,
    BlobRef,
    get_path,
    packb,
    shape_of,
    unpackb,
    unpackb_counting,
)


class TypesTest(unittest.TestCase):
    def test_values_round_trip_exactly(self) -> None:
        value = {
            "none": None,
            "t": True,
            "f": False,
            "small": 7,
            "neg": -5,
            "int64max": 2**63 - 1,
            "int64min": -(2**63),
            "uint64max": 2**64 - 1,
            "beyond_2_53": 2**53 + 1,
            "float": 0.1,
            "integral_float": 2.0,
            "str": "héllo wörld 😀",
            "bytes": bytes(range(256)),
            "nested": [1, [2, [3, {"deep": b"\x00"}]], {}],
            3: "int key",
        }
        back = unpackb(packb(value))
        self.assertEqual(back, value)
        self.assertIsInstance(back["integral_float"], float)
        self.assertIsInstance(back["bytes"], bytes)
        self.assertIsInstance(back["int64max"], int)

    def test_binary_types_become_bin(self) -> None:
        for v in (b"ab", bytearray(b"ab"), memoryview(b"ab")):
            self.assertEqual(packb(v), b"\xc4\x02ab")
            self.assertEqual(unpackb(packb(v)), b"ab")
        self.assertEqual(packb("ab"), b"\xa2ab")

    def test_tuples_become_lists(self) -> None:
        self.assertEqual(unpackb(packb((1, (2, 3)))), [1, [2, 3]])

    def test_ints_beyond_64_bits_are_refused(self) -> None:
        with self.assertRaises(OverflowError):
            packb(2**64)

    def test_unknown_types_are_refused_with_a_hint(self) -> None:
        with self.assertRaises(TypeError) as cm:
            packb({1, 2})
        self.assertIn("builtins.set", str(cm.exception))

    def test_aware_datetimes_are_msgpack_timestamps(self) -> None:
        t = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.timezone.utc)
        b = packb(t)
        self.assertEqual(b[0], 0xD7)  # fixext 8
        self.assertEqual(b[1], 0xFF)  # type -1
        self.assertEqual(unpackb(b), t)
        with self.assertRaises(ValueError):
            packb(datetime.datetime(2024, 5, 6))

    def test_msgpackr_undefined_decodes_as_none(self) -> None:
        self.assertEqual(unpackb(b"\x92\xd4\x00\x00\x01"), [None, 1])

    def test_other_extensions_stay_ext_types(self) -> None:
        self.assertEqual(unpackb(b"\xd4\x05\x07"), msgpack.ExtType(5, b"\x07"))


class BlobRefTest(unittest.TestCase):
    def test_encoding_is_ext_0x57_with_key_and_path(self) -> None:
        b = packb(BlobRef("jobs/jj/0/0", [0, "a"]))
        body = packb(["jobs/jj/0/0", [0, "a"]])
        self.assertEqual(len(body), 17)
        # ext 8: c7 <len> 57 <body>
        self.assertEqual(b, bytes([0xC7, len(body), BLOB_REF_EXT]) + body)

    def test_decodes_the_protocol_documents_example(self) -> None:
        key = "jobs/numbers-mwrq29dn-78d8dc/0/0"
        wire = (
            bytes([0x92, 0xC7, 0x25, 0x57, 0x92, 0xD9, 0x20]) + key.encode() + bytes([0x91, 0x00, 0x02])
        )
        value, refs = unpackb_counting(wire)
        self.assertEqual(value, [BlobRef(key, [0]), 2])
        self.assertEqual(refs, 1)

    def test_fixext_bodies_and_a_missing_path(self) -> None:
        body = packb(["k"])  # 3 bytes: no fixext size, ext 8
        self.assertEqual(unpackb(bytes([0xC7, len(body), 0x57]) + body), BlobRef("k", []))
        body16 = packb(["0123456789abc", []])  # 16 bytes: fixext 16
        self.assertEqual(len(body16), 16)
        self.assertEqual(unpackb(bytes([0xD8, 0x57]) + body16), BlobRef("0123456789abc", []))

    def test_counts_refs_anywhere(self) -> None:
        v = {"a": [BlobRef("x"), {"b": BlobRef("y", ["1"])}]}
        back, refs = unpackb_counting(packb(v))
        self.assertEqual(back, v)
        self.assertEqual(refs, 2)
        self.assertEqual(unpackb_counting(packb([1, 2]))[1], 0)


class PathTest(unittest.TestCase):
    def test_walks_like_nodes_getPath(self) -> None:
        v = {"items": [10, 20, {"k": "v"}], "n": None}
        self.assertEqual(get_path(v, []), v)
        self.assertEqual(get_path(v, ["items", 1]), 20)
        self.assertEqual(get_path(v, ["items", "1"]), 20)  # string steps index arrays
        self.assertEqual(get_path(v, ["items", "2", "k"]), "v")
        self.assertIs(get_path(v, ["items", "-1"]), MISSING)
        self.assertIs(get_path(v, ["items", "x"]), MISSING)
        self.assertIs(get_path(v, ["items", 3]), MISSING)
        self.assertIs(get_path(v, ["nope"]), MISSING)
        self.assertIs(get_path(v, ["n", "x"]), MISSING)
        self.assertIs(get_path(b"abc", [0]), MISSING)

    def test_int_keys_and_string_steps_meet(self) -> None:
        self.assertEqual(get_path({1: "a"}, ["1"]), "a")
        self.assertEqual(get_path({"1": "a"}, [1]), "a")


class ShapeTest(unittest.TestCase):
    def test_shapes_match_the_node_wrapper(self) -> None:
        self.assertEqual(shape_of([1, 2, 3]), {"type": "array", "size": 3})
        self.assertEqual(shape_of((1,)), {"type": "array", "size": 1})
        self.assertEqual(shape_of({"a": 1, "b": 2}), {"type": "object", "size": 2})
        self.assertEqual(shape_of(b"1234"), {"type": "binary", "size": 4})
        self.assertEqual(shape_of(memoryview(b"12")), {"type": "binary", "size": 2})
        self.assertEqual(shape_of(None), {"type": "null", "size": 0})
        self.assertEqual(shape_of(True), {"type": "boolean", "size": 0})
        self.assertEqual(shape_of(3), {"type": "number", "size": 0})
        self.assertEqual(shape_of(2.5), {"type": "number", "size": 0})
        # String sizes are UTF-16 code units, as JavaScript's String.length.
        self.assertEqual(shape_of("é😀"), {"type": "string", "size": 3})
        self.assertEqual(shape_of(MISSING), {"type": "undefined", "size": 0})


if __name__ == "__main__":
    unittest.main()
