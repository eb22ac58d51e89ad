"""Id and sequence columns as table rows: a stable hash, vocabularies, and sequences cut to
their most recent ids and padded, all vectorised (no Python loop over rows).

An id's key is its canonical text (``12``, ``12.0`` and ``"12"`` are one id; text is stripped),
hashed by ``pandas.util.hash_array`` (SipHash-2-4 of its UTF-8 bytes under a fixed key, then
pandas' fixed 64-bit mixing step): the same 64-bit value in every process, machine and
version (a test pins known values, and recomputes them from SipHash written out in Python).
Table rows: 0 is padding (a missing id, an unused sequence slot: never looked up), hashed ids
take ``1 + h mod buckets``, vocabulary ids ``2 + index`` with 1 for an id outside the
vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

HASH_KEY = "mmoe.ids.v1.key!"  # 16 bytes: SipHash's key; changing it changes every hash


def _arrow(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` as one Arrow array (pandas' own types, Arrow-backed columns, Python lists)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values.array, pd.arrays.ArrowExtensionArray):
        return pa.chunked_array(values.array._pa_array).combine_chunks()
    objects = values.to_numpy(dtype=object)
    try:
        return pa.array(objects, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (12 and "12"): their text
        if any(isinstance(v, list | tuple | np.ndarray) for v in objects):
            raise
        return pa.array(objects.astype(str), mask=np.asarray(pd.isna(objects), dtype=bool))


def id_keys(values: pd.Series | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The canonical text of each id and whether it is present (missing, empty or blank
    text is not: ``"4||5"`` holds two ids, a CSV cell ``""`` none).

    Args:
        values: (N,) ids: integers, floats with integral values, or text.

    Returns:
        ``(keys (N,) object array of str, present (N,) bool)``.

    Example:
        >>> keys, present = id_keys(pd.Series([12, None, 7]))
        >>> keys.tolist(), present.tolist()
        (['12', '', '7'], [True, False, True])
        >>> id_keys(pd.Series(["12", " a ", "12.0"]))[0].tolist()
        ['12', 'a', '12']
    """
    arr = _arrow(values)
    present = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(arr.type):
        as_int = pc.cast(pc.fill_null(arr, 0.0), pa.int64(), safe=False)
        integral = pc.equal(pc.cast(as_int, pa.float64()), pc.cast(arr, pa.float64()))
        arr = pc.if_else(pc.fill_null(integral, True), pc.cast(as_int, pa.string()),
                         pc.cast(arr, pa.string()))
    elif pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.string())
    else:
        arr = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
        keys = np.asarray(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object)
        return _integral_text(keys), present & (keys != "")  # "12.0" is 12; "" is missing
    keys = np.asarray(pc.fill_null(arr, "").to_numpy(zero_copy_only=False), dtype=object)
    keys[~present] = ""
    return keys, present


def _integral_text(keys: np.ndarray) -> np.ndarray:
    """Text that spells an integral float (``12.0``) becomes that integer's text (``12``)."""
    uniques, inverse = np.unique(keys, return_inverse=True)
    fixed = np.array([_canonical(u) for u in uniques], dtype=object)
    return fixed[inverse]


def _canonical(text: str) -> str:
    if "." not in text and "e" not in text.lower():
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 2**63 else text


def stable_hash(keys: np.ndarray) -> np.ndarray:
    """64-bit hash of each key (uint64): SipHash-2-4 of its UTF-8 bytes under
    :data:`HASH_KEY`, then pandas' mixing step (``pandas.util.hash_array``).

    Example:
        >>> int(stable_hash(np.array(["12"], dtype=object))[0]) % 1000
        473
    """
    return pd.util.hash_array(np.asarray(keys, dtype=object), encoding="utf8",
                              hash_key=HASH_KEY, categorize=True)


def hashed_rows(keys: np.ndarray, present: np.ndarray, buckets: int) -> np.ndarray:
    """Table rows of hashed ids: ``1 + h(key) mod buckets``, 0 where absent (int64).

    Example:
        >>> hashed_rows(np.array(["12", ""], dtype=object), np.array([True, False]), 1000)
        array([474,   0])
    """
    rows = (stable_hash(keys) % np.uint64(buckets)).astype(np.int64) + 1
    return np.where(present, rows, 0)


def vocabulary_rows(keys: np.ndarray, present: np.ndarray,
                    vocab: Sequence[str] | pd.Index) -> np.ndarray:
    """Table rows of ids in a vocabulary (a ``pd.Index`` is reused as it is): ``2 + index``,
    1 outside it, 0 where absent.

    Example:
        >>> vocabulary_rows(np.array(["b", "z", ""], dtype=object),
        ...                 np.array([True, True, False]), ["a", "b"])
        array([3, 1, 0])
    """
    vocab = vocab if isinstance(vocab, pd.Index) else pd.Index(list(vocab))
    index = vocab.get_indexer(keys)
    return np.where(present, np.where(index >= 0, index + 2, 1), 0).astype(np.int64)


def group_codes(values: pd.Series | pa.Array) -> np.ndarray:
    """A stable int64 per distinct id (for per-group metrics: equal ids, equal codes); the
    rows whose id is missing form one group together.

    Example:
        >>> codes = group_codes(pd.Series(["u1", "u2", "u1"]))
        >>> bool(codes[0] == codes[2]), bool(codes[0] == codes[1])
        (True, False)
    """
    keys, _ = id_keys(values)
    return stable_hash(keys).view(np.int64)


def sequence_cells(values: pd.Series | pa.Array, delimiter: str = "|"
                   ) -> tuple[pa.Array, np.ndarray]:
    """The ids of every row of a sequence column, flattened: ``(ids (M,), lengths (N,))``.

    A row is a list (a Parquet ``list<...>`` column, or Python lists) or a text cell whose ids
    are separated by ``delimiter`` (``"12|7|93"``; empty text: no ids); a missing row holds no
    ids.

    Example:
        >>> ids, lengths = sequence_cells(pd.Series(["12|7", "", None, "5"]))
        >>> ids.to_pylist(), lengths.tolist()
        (['12', '7', '5'], [2, 0, 0, 1])
        >>> sequence_cells(pd.Series([[3, 4], [], None]))[1].tolist()
        [2, 0, 0]
    """
    arr = _arrow(values)
    if pa.types.is_null(arr.type):
        return pa.array([], pa.string()), np.zeros(len(arr), dtype=np.int64)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        text = pc.cast(arr, pa.string())
        text = pc.if_else(pc.equal(pc.utf8_trim_whitespace(text), ""), None, text)
        arr = pc.split_pattern(text, delimiter)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    return pc.list_flatten(arr), np.asarray(lengths, dtype=np.int64)


def recent_slots(rows: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Each row's last ``max_len`` table rows (oldest first), padded with 0: (N, max_len).

    Args:
        rows: (M,) the table rows of all rows' ids, row after row.
        lengths: (N,) ids per row.
        max_len: slots per row.

    Example:
        >>> recent_slots(np.array([5, 6, 7, 8]), np.array([3, 0, 1]), 2)
        array([[6, 7],
               [0, 0],
               [8, 0]])
    """
    n = len(lengths)
    ends = np.cumsum(lengths)  # (N,) one past each row's last id
    kept = np.minimum(lengths, max_len)
    slot = np.arange(max_len)[None, :]  # (1, L)
    source = (ends - kept)[:, None] + slot  # (N, L) the kept ids, oldest first
    out = np.zeros((n, max_len), dtype=np.int64)
    used = slot < kept[:, None]
    out[used] = rows[source[used]]
    return out
