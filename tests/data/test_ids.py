"""Ids as table rows (mmoe.data.ids): a hash pinned to known values and stable across
processes, one row per id whatever its spelling, vocabularies, sequence cells from Arrow
lists, Python lists and delimited text, and the most recent ids of each sequence."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mmoe.data.ids import (
    HASH_KEY,
    group_codes,
    hashed_rows,
    id_keys,
    recent_slots,
    sequence_cells,
    stable_hash,
    vocabulary_rows,
)

# computed once with this module, and equal to the plain SipHash-2-4 below: a change of the
# hash (its key, pandas' implementation, the canonical text) changes every table row, so
# every saved model would read other rows
PINNED = {
    "12": 13703423277528200473,
    "7": 4239156421686395053,
    "user_42": 18307003299315446203,
    "": 15964930058011334493,
    "é": 17734522761606214690,
    "a much longer key of 31 bytes!!": 16869473186896904516,
}
ROWS_1000 = {"12": 474, "7": 54, "user_42": 204}
ROWS_4096 = {"12": 1306, "7": 174, "user_42": 444}

_M = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M


def _siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 (Aumasson & Bernstein 2012), written out from the paper."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sip_round():
        v[0] = (v[0] + v[1]) & _M
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & _M
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & _M
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    n = len(msg)
    whole = n - n % 8
    for i in range(0, whole, 8):
        (m,) = struct.unpack("<Q", msg[i:i + 8])
        v[3] ^= m
        sip_round()
        sip_round()
        v[0] ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(msg[whole:], "little")
    v[3] ^= last
    sip_round()
    sip_round()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(4):
        sip_round()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _spread(x: int) -> int:
    """pandas.util.hash_array's final mixing of each 64-bit hash (splitmix64's finaliser)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def _keys(*values):
    return np.array(values, dtype=object)


# ---- the hash ------------------------------------------------------------------------------
def test_stable_hash_is_pinned():
    got = stable_hash(_keys(*PINNED))
    assert got.dtype == np.uint64
    assert [int(h) for h in got] == list(PINNED.values())


def test_stable_hash_is_siphash_2_4_of_the_utf8_bytes_under_the_fixed_key():
    assert len(HASH_KEY.encode()) == 16
    for key, value in PINNED.items():
        assert _spread(_siphash24(HASH_KEY.encode(), key.encode("utf8"))) == value, key


def test_hashed_rows_are_pinned():
    keys = _keys(*ROWS_1000)
    present = np.ones(len(keys), dtype=bool)
    assert hashed_rows(keys, present, 1000).tolist() == list(ROWS_1000.values())
    assert hashed_rows(keys, present, 4096).tolist() == list(ROWS_4096.values())
    # 1 + h mod buckets, from the pinned hashes
    assert [1 + PINNED[k] % 1000 for k in ROWS_1000] == list(ROWS_1000.values())


def test_hash_is_the_same_in_a_fresh_process():
    code = ("import json, numpy as np\n"
            "from mmoe.data.ids import hashed_rows, stable_hash\n"
            f"keys = np.array({list(PINNED)!r}, dtype=object)\n"
            "rows = hashed_rows(keys[:3], np.ones(3, bool), 1000)\n"
            "print(json.dumps([[int(h) for h in stable_hash(keys)], rows.tolist()]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert done.returncode == 0, done.stderr
    hashes, rows = json.loads(done.stdout)
    assert hashes == list(PINNED.values())
    assert rows == list(ROWS_1000.values())


def test_hashed_rows_lie_in_range_and_missing_is_zero():
    keys = _keys(*(f"id{i}" for i in range(5000)), "")
    present = np.r_[np.ones(5000, dtype=bool), False]
    rows = hashed_rows(keys, present, 37)
    assert rows.dtype == np.int64 and rows[-1] == 0
    assert rows[:-1].min() == 1 and rows[:-1].max() == 37  # 5000 ids fill all 37 buckets
    expected = (stable_hash(keys[:-1]) % np.uint64(37)).astype(np.int64) + 1
    assert np.array_equal(rows[:-1], expected)


# ---- canonical keys --------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    pd.Series([12]), pd.Series([12], dtype="int32"), pd.Series([12.0]), pd.Series(["12"]),
    pd.Series([" 12 "]), pd.Series(["12.0"]), pd.Series([12], dtype="int64[pyarrow]"),
    pa.array([12], pa.int16()), pa.chunked_array([pa.array(["12 "])]),
])
def test_one_id_whatever_its_spelling(values):
    keys, present = id_keys(values)
    assert keys.tolist() == ["12"] and present.tolist() == [True]
    assert hashed_rows(keys, present, 1000).tolist() == [474]
    assert group_codes(values).view(np.uint64).tolist() == [PINNED["12"]]


def test_a_column_mixing_types_holds_one_id_per_spelling():
    """An object column with numbers and text together (as pandas' read_csv gives when a
    column's chunks differ) is read through each value's text."""
    values = pd.Series([12, 12.0, "12", " 12 ", None, np.nan, "a", 7.5], dtype=object)
    keys, present = id_keys(values)
    assert keys.tolist() == ["12", "12", "12", "12", "", "", "a", "7.5"]
    assert present.tolist() == [True] * 4 + [False] * 2 + [True] * 2
    assert hashed_rows(keys, present, 1000)[:5].tolist() == [474, 474, 474, 474, 0]
    assert _cells(pd.Series(["12|7", 5, None], dtype=object)) == (["12", "7", "5"], [2, 1, 0])


def test_missing_ids_are_absent_and_get_row_zero():
    for values in (pd.Series([12.0, np.nan, 7.0]), pd.Series(["12", None, "7"]),
                   pd.Series([12, None, 7], dtype="Int64"), pa.array([12, None, 7])):
        keys, present = id_keys(values)
        assert keys.tolist() == ["12", "", "7"], values
        assert present.tolist() == [True, False, True]
        assert hashed_rows(keys, present, 1000).tolist() == [474, 0, 54]
        assert vocabulary_rows(keys, present, ["7", "12"]).tolist() == [3, 0, 2]


def test_only_integral_values_drop_their_decimals():
    keys, _ = id_keys(pd.Series([12.5, 3.0, -2.0]))
    assert keys.tolist() == ["12.5", "3", "-2"]
    keys, _ = id_keys(pd.Series(["12.50", "3.0", "-2.0", "1e3", "abc.def", "v1.0"]))
    assert keys.tolist() == ["12.50", "3", "-2", "1000", "abc.def", "v1.0"]


def test_vocabulary_rows():
    keys, present = _keys("b", "a", "zz", "", "b"), np.array([True, True, True, False, True])
    # row 2 + index in the vocabulary, 1 outside it, 0 absent
    assert vocabulary_rows(keys, present, ["a", "b"]).tolist() == [3, 2, 1, 0, 3]
    assert vocabulary_rows(keys, present, pd.Index(["b"])).tolist() == [2, 1, 1, 0, 2]
    assert vocabulary_rows(keys, present, []).tolist() == [1, 1, 1, 0, 1]


def test_group_codes_equal_for_equal_ids_only():
    codes = group_codes(pd.Series(["u1", " u2", "u1", "u2", "u3"]))
    assert codes.dtype == np.int64
    assert codes[0] == codes[2] and codes[1] == codes[3]
    assert len({codes[0], codes[1], codes[4]}) == 3
    assert np.array_equal(codes, group_codes(pa.array(["u1", "u2", "u1", "u2 ", "u3"])))


# ---- sequences -------------------------------------------------------------------------------
def _cells(values, delimiter="|"):
    ids, lengths = sequence_cells(values, delimiter)
    keys, present = id_keys(ids)
    assert present.all()
    return keys.tolist(), lengths.tolist()


def test_sequence_cells_of_arrow_lists():
    lists = pa.array([[12, 7, 93], [], None, [5]], pa.list_(pa.int64()))
    assert _cells(lists) == (["12", "7", "93", "5"], [3, 0, 0, 1])
    large = pa.array([["a", "b"], None], pa.large_list(pa.string()))
    assert _cells(large) == (["a", "b"], [2, 0])
    series = pd.Series(pd.arrays.ArrowExtensionArray(lists))  # as read from Parquet
    assert _cells(series) == (["12", "7", "93", "5"], [3, 0, 0, 1])


def test_sequence_cells_of_python_lists():
    assert _cells(pd.Series([[12, 7], [], None, [93.0]])) == (["12", "7", "93"], [2, 0, 0, 1])


def test_sequence_cells_of_delimited_text():
    text = pd.Series(["12|7|93", "", None, "5", "  ", " 4 | 6"])
    assert _cells(text) == (["12", "7", "93", "5", "4", "6"], [3, 0, 0, 1, 0, 2])
    assert _cells(pd.Series(["12;7", "12|7", None]), ";") == (["12", "7", "12|7"], [2, 1, 0])
    assert _cells(pd.Series([None, None])) == ([], [0, 0])


def test_delimited_text_and_lists_give_the_same_rows():
    lists = pa.array([[12, 7, 93], [], None, [5]])
    text = pd.Series(["12|7|93", "", None, "5"])
    out = []
    for values in (lists, text):
        ids, lengths = sequence_cells(values)
        keys, present = id_keys(ids)
        out.append(recent_slots(hashed_rows(keys, present, 1000), lengths, 2))
    assert np.array_equal(out[0], out[1])
    # rows of 7, 93 and 5 in 1000 buckets: 54, 61, 290 (the last two ids of the first row)
    assert out[0].tolist() == [[54, 61], [0, 0], [0, 0], [290, 0]]


def _recent_reference(rows, lengths, max_len):
    """Each row's last max_len values, oldest first, 0-padded: a plain loop."""
    out, start = [], 0
    for n in lengths:
        kept = list(rows[start:start + n])[-max_len:]
        out.append(kept + [0] * (max_len - len(kept)))
        start += n
    return out


def test_recent_slots_keep_the_last_ids_oldest_first():
    rows = np.array([11, 12, 13, 14, 15, 21, 31, 32])
    lengths = np.array([5, 0, 1, 2])
    assert recent_slots(rows, lengths, 3).tolist() == [[13, 14, 15], [0, 0, 0], [21, 0, 0],
                                                       [31, 32, 0]]
    assert recent_slots(rows, lengths, 1).tolist() == [[15], [0], [21], [32]]
    assert recent_slots(np.array([], dtype=np.int64), np.array([0, 0]), 2).tolist() == [
        [0, 0], [0, 0]]


def test_recent_slots_equal_a_plain_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 300)
    rows = rng.integers(1, 1000, lengths.sum())
    for max_len in (1, 4, 8, 12):
        got = recent_slots(rows, lengths, max_len)
        assert got.shape == (300, max_len) and got.dtype == np.int64
        assert got.tolist() == _recent_reference(rows, lengths, max_len)
