"""stream.packing without Spark: rows -> one row per shard (lists) -> the same rows back."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa

from stream.packing import pack_by_shard, unpack


def batch(shards: list[int], ts: list[int | None], values: list[bytes | None],
          reasons: list[str | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "shard": pa.array(shards, pa.int32()),
        "ts_ms": pa.array(ts, pa.int64()),
        "value": pa.array(values, pa.binary()),
        "reason": pa.array(reasons, pa.string()),
    })


def test_one_row_per_shard_with_every_input_row_in_arrival_order() -> None:
    first = batch([1, 0, 1, -1], [5, 6, 7, None], [b"a", b"b", b"c", None], [None, None, None, "bad"])
    second = batch([0, 1], [9, 10], [b"d", b"e"], [None, None])
    (packed,) = list(pack_by_shard(iter([first, second])))
    assert packed.to_pydict() == {
        "shard": [-1, 0, 1],
        "ts_ms": [[None], [6, 9], [5, 7, 10]],
        "value": [[None], [b"b", b"d"], [b"a", b"c", b"e"]],
        "reason": [["bad"], [None, None], [None, None, None]],
    }


def test_unpack_gives_back_the_rows_of_a_shard() -> None:
    rows = batch([2, 3, 2, 2], [1, 2, 3, 4], [b"w", b"x", b"y", b"z"], [None, None, None, None])
    (packed,) = list(pack_by_shard(iter([rows])))
    frame = packed.to_pandas()
    got = unpack(frame[frame["shard"] == 2])
    assert list(got.columns) == ["ts_ms", "value", "reason"]
    assert got["ts_ms"].tolist() == [1, 3, 4] and got["value"].tolist() == [b"w", b"y", b"z"]
    assert got["reason"].isna().all()


def test_unpack_of_several_packed_rows_concatenates_them_in_order() -> None:
    # two input tasks' packed rows for one shard, as the stateful operator receives them
    tasks = [pa.table({"shard": pa.array([0], pa.int32()), "price": [[1.5, 2.5]], "kind": [["tick", "tick"]]}),
             pa.table({"shard": pa.array([0], pa.int32()), "price": pa.array([[None]], pa.list_(pa.float64())), "kind": [["history"]]})]
    frame = pd.concat([t.to_pandas() for t in tasks], ignore_index=True)
    got = unpack(frame)
    assert got["kind"].tolist() == ["tick", "tick", "history"]
    assert got["price"].tolist()[:2] == [1.5, 2.5] and math.isnan(got["price"].iloc[2])


def test_nothing_in_gives_nothing_out() -> None:
    assert list(pack_by_shard(iter([]))) == []
    assert list(pack_by_shard(iter([batch([], [], [], [])]))) == []
