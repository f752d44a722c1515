"""A scheduled job whose input is a Butler query (``butler: {repo, collections}``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from butler_repo import NIGHT1, NIGHT2, Repo

from calibmon.config import load_settings
from calibmon.errors import ConfigError
from calibmon.service.scheduler import Service, shifted_clock
from calibmon.service.schedules import JobSpec, load_schedules
from calibmon.store.sqlite import Store

# 13:00 UTC on 2025-11-23 is day_obs 20251123: the previous day_obs is NIGHT2 and a
# one-day catch-up window reaches NIGHT1.
NOW = datetime(2025, 11, 23, 13, 0, tzinfo=UTC)


def _job(repo: str) -> JobSpec:
    return JobSpec.model_validate({
        "name": "daily-butler", "kinds": ["bias"], "cron": "30 12 * * *",
        "catch_up_days": 1, "butler": {"repo": repo, "collections": "LSSTCam/raw/all"},
    })  # fmt: skip


def test_job_reads_its_days_from_the_butler(butler_night: Repo, tmp_path) -> None:
    repo = str(butler_night.root)
    with Store(tmp_path / "cm.sqlite") as store:
        settings = load_settings(None, store=store.path, executor="serial")
        svc = Service(settings, store, [_job(repo)], clock=shifted_clock(NOW))
        f = svc.fire("daily-butler")
        assert f is not None and f.outcome == "success", f
        assert f.units_done == 4 and sorted(f.day_obs) == [NIGHT1, NIGHT2]
        recs = list(store.iter_records(metric="read_noise_adu", level="amp"))
        assert {(r.day_obs, r.detector_name) for r in recs} == {
            (d, n) for d in (NIGHT1, NIGHT2) for n in ("R22_S11", "R01_S01")
        }
        assert len(recs) == 64
        for r in recs:
            assert (r.provenance.model_extra or {})["butler"] == {
                "repo": repo, "collections": ["LSSTCam/raw/all"],
            }  # fmt: skip
        assert not list(store.iter_records(metric="dark_current"))  # bias job only
        again = svc.fire("daily-butler")
        assert again is not None and again.outcome == "idle" and again.units_done == 0


def test_input_and_butler_exclude_each_other(tmp_path) -> None:
    (tmp_path / "job.yaml").write_text(
        "name: both\nkinds: [bias]\ncron: '30 12 * * *'\ninput: /data/{day_obs}\n"
        "butler: {repo: /repo/embargo}\n"
    )
    with pytest.raises(ConfigError, match=r"a directory \(input\) or a Butler, not both"):
        load_schedules(tmp_path)
