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
import math
from collections.abc import Iterator
from typing import Any, TextIO

from tether.log.table import FIXED_COLUMNS, LogTable, column_names


def columns(table: LogTable) -> list[str]:
    return ["eval_id", *column_names(table.names), *FIXED_COLUMNS[1:]]


def _rows(table: LogTable) -> Iterator[dict[str, Any]]:
    names = table.names
    for eid in sorted(table.rows):
        yield table.rows[eid].as_dict(names)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a coordinate or value that was written as null stays null
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            row[k] = None
    return row


def write_csv(table: LogTable, out: TextIO) -> int:
    """Write the rows as CSV with a header; return how many rows."""
    w = csv.writer(out, lineterminator="\n")
    cols = columns(table)
    w.writerow(cols)
    n = 0
    for row in _rows(table):
        w.writerow(["" if v is None else v for v in _finite(row).values()])
        n += 1
    return n


def write_json(table: LogTable, out: TextIO) -> int:
    """Write the rows as one JSON array of objects (``records`` orientation); return how many."""
    dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    out.write("[")
    n = 0
    for row in _rows(table):
        out.write(("\n" if n == 0 else ",\n") + dumps(_finite(row)))
        n += 1
    out.write("\n]\n")
    return n
