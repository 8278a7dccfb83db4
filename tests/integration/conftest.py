from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster

# Under pytest-xdist (scripts/test runs two processes) tests that share one machine-wide
# resource run in one process, one after the other: the one-node Slurm cluster (two
# jobs at once would queue behind each other and miss their walltime windows) and the
# veth address ranges of the network-namespace tests.
SHARED = {"test_slurm.py": "slurm", "test_launch_slurm.py": "slurm", "test_netns.py": "netns"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = SHARED.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:  # leave the evidence in the report
            for out in sorted(tmp_path.glob("*.out")):
                print(f"----- {out.name} (last 20 lines)")
                print("\n".join(out.read_text().splitlines()[-20:]))
            if c.log.exists():
                print("----- run.jsonl (last 30 events)")
                print("\n".join(c.log.read_text().splitlines()[-30:]))
