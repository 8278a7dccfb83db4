"""``tether log export``: one row per evaluation, as CSV or JSON, for pandas and friends.

Columns: ``eval_id``, one column per variable (named as in ``[space]``), ``status``,
``value``, ``worker``, ``start``, ``end`` (Unix seconds of the attempt that ended it),
``duration`` (seconds), ``attempts``, ``partials`` (how many), ``error`` (first line) and
``tag``. Missing values are empty cells in CSV and ``null`` in JSON, so
``pandas.read_csv`` and ``pandas.read_json`` load them as NaN without options.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

from tether.log.table import LogTable, export_columns


def _rows(table: LogTable) -> Iterator[tuple[Any, ...]]:
    rows = table.rows
    for eid in sorted(rows):
        yield rows[eid].values()


def write_csv(table: LogTable, out: TextIO) -> int:
    """Write the rows as CSV with a header; return how many rows."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(export_columns(table.names))
    n = 0
    for row in _rows(table):
        # None and NaN (a coordinate written as null) are empty cells; v != v only for NaN
        w.writerow(["" if v is None or v != v else v for v in row])
        n += 1
    return n


def write_json(table: LogTable, out: TextIO) -> int:
    """Write the rows as one JSON array of objects (``records`` orientation); return how many."""
    dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    cols = export_columns(table.names)
    out.write("[")
    n = 0
    for row in _rows(table):
        obj = dict(zip(cols, (None if v != v else v for v in row)))  # JSON has no NaN
        out.write(("\n" if n == 0 else ",\n") + dumps(obj))
        n += 1
    out.write("\n]\n")
    return n
