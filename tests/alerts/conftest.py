"""Fixtures of the alert tests: a temp store, and real peers — Alertmanager (Debian
``prometheus-alertmanager``), an aiosmtpd SMTP server and a local ``http.server`` webhook
receiver — on free 127.0.0.1 ports, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import (
    AM_TEST_CONFIG,
    Alertmanager,
    HttpReceiver,
    ServerMissing,
    SmtpSink,
    free_port,
)

from calibmon.catalogue import load_catalogue
from calibmon.store.sqlite import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "calibmon.sqlite")
    yield s
    s.close()


@pytest.fixture
def catalogue():
    return load_catalogue()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: HttpReceiver) -> Iterator[Alertmanager]:
    """A real Alertmanager routing everything to ``receiver`` (group_wait 1s, group_interval
    1s, send_resolved) so a test sees what it would page."""
    try:
        am = Alertmanager(tmp_path / "am", AM_TEST_CONFIG.format(url=receiver.url))
    except ServerMissing as exc:
        pytest.skip(str(exc))
    am.start()
    yield am
    am.stop()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Any, SmtpSink]]:
    """An in-process aiosmtpd server on a free port; yields (controller, sink)."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, sink
    ctl.stop()
