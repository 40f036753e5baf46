"""Many input rows -> one row per shard, and back: what keeps the stateful operator's Python cheap.

PySpark's ``transformWithStateInPandas`` serializer turns every input row into a
Python tuple and rebuilds a DataFrame from those tuples (``itertuples`` then
``pd.DataFrame(rows)``), about 50 µs a row here: at 20,000 ticks/s that was most
of each micro-batch. So, before the shuffle to the stateful operator, a stateless
``mapInArrow`` step (:func:`pack_by_shard`, pure pyarrow) turns each input task's
rows into one row per shard whose columns are lists (one element per original
row, in arrival order), and the processor unpacks them (:func:`unpack`) into the
very DataFrame it would have had row by row. Nothing is aggregated: every tick,
history bar and invalid input keeps its own values, so lateness, the DLQ and
the bars are decided exactly as before.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SHARD_COLUMN", "pack_by_shard", "unpack"]

SHARD_COLUMN = "shard"


def pack_by_shard(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: all of a task's rows as one row per shard (lists, arrival order kept).

    Must see the whole iterator before it yields (one task's share of one micro-batch,
    bounded by ``maxOffsetsPerTrigger``). The sort by shard is stable, so each list
    keeps the rows' order in the task.
    """
    received = list(batches)
    if not received or sum(b.num_rows for b in received) == 0:
        return
    table = pa.Table.from_batches(received)
    table = table.take(pc.sort_indices(table, sort_keys=[(SHARD_COLUMN, "ascending")]))
    table = table.combine_chunks()
    shards = table.column(SHARD_COLUMN).to_numpy()
    starts = np.concatenate(([0], np.flatnonzero(np.diff(shards)) + 1))
    offsets = pa.array(np.append(starts, len(shards)), type=pa.int32())
    columns: list[pa.Array] = [pa.array(shards[starts], type=pa.int32())]
    names = [SHARD_COLUMN]
    for name in table.column_names:
        if name == SHARD_COLUMN:
            continue
        columns.append(pa.ListArray.from_arrays(offsets, table.column(name).chunk(0)))
        names.append(name)
    yield pa.RecordBatch.from_arrays(columns, names=names)


def unpack(packed: pd.DataFrame) -> pd.DataFrame:
    """The rows that :func:`pack_by_shard` packed, in the packed rows' order (no ``shard`` column).

    Each cell of ``packed[column]`` is an array of one packed row's values.
    """
    out: dict[str, object] = {}
    for name in (c for c in packed.columns if c != SHARD_COLUMN):
        parts = [np.asarray(cell) if cell is not None else np.empty(0, dtype=object) for cell in packed[name]]
        out[name] = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    return pd.DataFrame(out)
