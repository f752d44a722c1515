"""``calibmon demo`` (DESIGN §3): simulates, processes, alerts, prints a per-amp table and
writes an HTML report, with no server."""

from __future__ import annotations

from calibmon.cli import main


def test_demo_end_to_end(tmp_path, capsys) -> None:
    assert main(["demo", "--workdir", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("detector amp"))
    for column in ("rn[e-]", "gain", "ptc_g", "fullwell", "dark[e/s]", "s_cti", "defects"):
        assert column in header
    rows = [line for line in out.splitlines() if line.startswith(("R22_S11 ", "R01_S01 "))]
    assert len(rows) == 32
    report = next(tmp_path.glob("calibmon-report-*.html"))
    assert report.stat().st_size > 100_000 and f"report: {report}" in out
    assert (tmp_path / "calibmon.sqlite").exists()
