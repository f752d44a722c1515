"""Figures drawn by worker processes are the figures drawn in process, in the same places;
the store's concept modules are what the documented notebook module re-exports."""

from __future__ import annotations

import re

import pytest

from calibmon.report import figures
from calibmon.report.html import build_report
from calibmon.store import dataframes, frames, images, influx_query, queries
from calibmon.store.sqlite import Store

GENERATED = re.compile(r"Report generated [^<]*")


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_draw_the_same_report(two_detector_store, monkeypatch, workers: int) -> None:
    path, _ = two_detector_store
    monkeypatch.setattr(figures, "MIN_FIGURES_PER_WORKER", 1)
    with Store(path) as store:
        monkeypatch.setattr(figures, "FIGURE_WORKERS", 1)
        serial = build_report(store)
        monkeypatch.setattr(figures, "FIGURE_WORKERS", workers)
        drawn = build_report(store)
    assert serial.count("data:image/png;base64,") > 10
    assert GENERATED.sub("", drawn) == GENERATED.sub("", serial)


def test_frames_reexports_the_concept_modules() -> None:
    assert frames.frame is dataframes.frame
    assert frames.influx_frame is influx_query.influx_frame
    assert frames.decode_amp_image is images.decode_amp_image
    assert frames.day_amp_values is queries.day_amp_values
    assert set(frames.__all__) <= set(dir(frames))
