"""Fixtures for the report tests: stores holding synthetic nights (see ``nightdata``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/report for nightdata.py

from nightdata import DAYS, DETECTORS, REPORT_METRICS, cli_with_report, populate

from calibmon.store.sqlite import Store


@pytest.fixture(scope="session")
def two_detector_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """Four nights of :data:`REPORT_METRICS` for R22_S11 and R01_S01; the last night with
    binned bias/dark/flat, PTC curves and a firing read-noise alert on R22_S11 C10."""
    path = tmp_path_factory.mktemp("report-store") / "calibmon.sqlite"
    with Store(path) as store:
        truth = populate(store, DETECTORS, DAYS, metrics=REPORT_METRICS)
    yield path, truth


@pytest.fixture(scope="session")
def two_detector_report(two_detector_store, tmp_path_factory) -> Path:
    """The HTML report of the last night of :func:`two_detector_store`, written by the CLI."""
    from calibmon.cli import main

    path, _ = two_detector_store
    out = tmp_path_factory.mktemp("report-html") / "report.html"
    with cli_with_report():
        rc = main(
            [
                "report",
                "--store",
                str(path),
                "--day-obs",
                DAYS[-1],
                "--nights",
                "4",
                "-o",
                str(out),
                "-q",
            ]
        )
    assert rc == 0
    return out


@pytest.fixture
def registered_cli():
    """``calibmon.cli.main`` with the report/dashboards commands registered."""
    from calibmon.cli import main

    with cli_with_report():
        yield main
