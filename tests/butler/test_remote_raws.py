"""Raws whose Butler URIs are remote (https/http/s3 at Rubin): read through a temporary
local copy. A real HTTP server (stdlib, on a free 127.0.0.1 port) serves the files of one
detector; the repository's raws point at it (``direct`` ingest of http:// URIs)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from butler_repo import NIGHT1, Repo, ingest_raws, make_repo

from calibmon.cli import main


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no request lines on stderr
        pass


@pytest.fixture()
def http_root(butler_night: Repo) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(butler_night.raw / NIGHT1))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _records(store: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["export", "--format", "jsonl", "--store", str(store)]) == 0
    out = []
    for line in capsys.readouterr().out.splitlines():
        r = json.loads(line)
        for k in ("run", "processed_at", "butler"):
            r["provenance"].pop(k, None)
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def test_remote_raws_through_local_copies(butler_night: Repo, http_root: str, tmp_path, capsys):
    files = sorted((butler_night.raw / NIGHT1).glob("*_R22_S11.fits"))
    butler = make_repo(tmp_path / "repo", ["R22_S11"])
    n = ingest_raws(butler, files, uris=[f"{http_root}/{f.name}" for f in files])
    assert n == 16
    s_in, s_b = tmp_path / "in.sqlite", tmp_path / "b.sqlite"
    common = ("--day-obs", NIGHT1, "--detectors", "R22_S11", "--workers", "1", "-q")
    assert main(["run", "--input", str(butler_night.raw / NIGHT1), "--store", str(s_in),
                 *common]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["run", "--butler", str(tmp_path / "repo"), "--store", str(s_b), *common]) == 0
    out = capsys.readouterr().out
    assert "16 raw datasets" in out and "16 remote files read from local copies" in out
    got, want = _records(s_b, capsys), _records(s_in, capsys)
    assert len(want) > 50 and got == want
