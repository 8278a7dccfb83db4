"""The ``--address-file`` format, shared by the controller that writes it and the workers,
``tether status`` and ``tether launch`` that read it.

Line 1 is the endpoint workers dial. Once the run is over the controller adds a line
``finished REASON``, so a worker started late (a Slurm array task, a new job) exits 0 at
once instead of waiting for a controller that will not come back. The file is replaced
atomically, so a reader never sees half of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the address file's second line once the run is over (``finished REASON``)
FINISHED_MARK = "finished"


@dataclass(frozen=True)
class Address:
    endpoint: str | None  # None: the first line is empty
    finished: str | None  # the reason after the mark; None while the run goes on


def write_address(path: str, where: str, finished: str | None = None) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(where + "\n" + (f"{FINISHED_MARK} {finished}\n" if finished is not None else ""))
    tmp.replace(path)  # atomic: a worker never reads half an address


def read_address(path: str) -> Address:
    """Raises OSError when the file is not there (yet)."""
    lines = Path(path).read_text().split("\n")
    mark = next((ln for ln in lines[1:] if ln.startswith(FINISHED_MARK)), None)
    return Address(lines[0].strip() or None,
                   None if mark is None else mark[len(FINISHED_MARK):].strip())
