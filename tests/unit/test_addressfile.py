"""The --address-file format: written by the controller, read by workers and tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.addressfile import read_address, write_address


def test_round_trip_while_running_and_once_finished(tmp_path: Path) -> None:
    f = str(tmp_path / "addr")
    write_address(f, "tcp://node1:5555")
    assert read_address(f).endpoint == "tcp://node1:5555"
    assert read_address(f).finished is None
    write_address(f, "tcp://node1:5555", finished="budget")
    assert Path(f).read_text() == "tcp://node1:5555\nfinished budget\n"  # the documented format
    assert read_address(f).finished == "budget"
    assert not Path(f + ".tmp").exists()  # replaced atomically


def test_empty_first_line_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "addr"
    f.write_text("\n")
    assert read_address(str(f)).endpoint is None
    with pytest.raises(OSError):
        read_address(str(tmp_path / "none"))
