"""schedules/*.yaml: the shipped cadence loads; bad files fail naming file and key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calibmon.errors import ConfigError
from calibmon.service.schedules import (
    JobSpec,
    check_against_settings,
    cron_trigger,
    load_schedules,
    parse_schedule_file,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
name: daily
kinds: [bias, dark, flat]
cron: "30 12 * * *"
"""


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_schedules_follow_the_rubin_cadence() -> None:
    jobs = {j.name: j for j in load_schedules(REPO / "schedules")}
    assert set(jobs) == {"daily", "ptc-ramp", "defects-weekly", "staleness"}
    daily = jobs["daily"]
    assert set(daily.kinds) == {"bias", "dark", "flat", "gain"}
    assert daily.discover_kinds == ("bias", "dark", "flat")
    assert daily.day_obs == "previous" and daily.catch_up_days >= 1
    assert jobs["ptc-ramp"].discover_kinds == ("ptc",) and jobs["ptc-ramp"].settle_seconds > 0
    assert jobs["ptc-ramp"].day_obs == "current"
    assert {e.kind for e in jobs["staleness"].expected} >= {"bias", "dark", "flat", "gain"}
    # the weekly job fires on Mondays (crontab numbering: 1 = Monday)
    nxt = (
        jobs["defects-weekly"]
        .trigger()
        .get_next_fire_time(None, datetime(2025, 11, 19, tzinfo=UTC))
    )
    assert nxt.strftime("%a %H:%M") == "Mon 14:00"
    # the daily job fires after the 12:00 UTC day_obs rollover
    nxt = daily.trigger().get_next_fire_time(None, datetime(2025, 11, 22, 12, 0, tzinfo=UTC))
    assert nxt == datetime(2025, 11, 22, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (GOOD + "colour: blue\n", "colour", "unknown key"),
        (GOOD.replace("30 12", "61 12"), "cron", "invalid cron expression '61 12 * * *'"),
        (GOOD.replace("30 12 * * *", "30 12 * *"), "cron", "must have five fields"),
        (GOOD.replace("* * *", "* * 8"), "cron", "day of week '8' is not 0-7"),
        (GOOD + "timezone: Mars/Olympus\n", "timezone", "unknown time zone"),
        (GOOD + "detectors: [R22_S11, S11]\n", "detectors", "'S11' is not a detector name"),
        (GOOD.replace("[bias, dark, flat]", "[bias, biases]"), "kinds[1]", "Input should be"),
        (GOOD.replace("[bias, dark, flat]", "[]"), "kinds", "at least 1 item"),
        (GOOD + "catch_up_days: -1\n", "catch_up_days", "greater than or equal to 0"),
        (GOOD + "input: /data/{night}\n", "input", "only the {day_obs} placeholder"),
        (GOOD + "day_obs: tomorrow\n", "day_obs", "'previous' or 'current'"),
        (GOOD.replace("[bias, dark, flat]", "[staleness]"), "expected", "a staleness job lists"),
        (GOOD + "expected: [bias]\n", "expected", "only a staleness job"),
        (GOOD.replace("[bias, dark, flat]", "[staleness]") + "expected: [bias, bias]\n",
         "expected", "each kind at most once"),
        (GOOD + "expected: [{kind: bias, within_days: 0}]\n", "expected[0].within_days", "greater than or equal to 1"),
        (GOOD.replace("name: daily", "name: 'bad name'"), "name", "should match pattern"),
        ("kinds: [bias]\ncron: '0 0 * * *'\n", "name", "Field required"),
    ],
)  # fmt: skip
def test_invalid_job_names_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        parse_schedule_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_jobs_list_errors_point_at_the_entry(tmp_path: Path) -> None:
    text = (
        "jobs:\n  - "
        + GOOD.replace("\n", "\n    ")
        + "\n  - name: b\n    kinds: [bias]\n    cron: nope\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"job\.yaml: jobs\[1\]\.cron: .* five fields"):
        parse_schedule_file(path)


def test_yaml_errors_and_shapes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+: not valid YAML"):
        parse_schedule_file(_write(tmp_path, "name: a\nkinds: [bias\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="must hold a job"):
        parse_schedule_file(_write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(ConfigError, match="jobs: must be a non-empty list"):
        parse_schedule_file(_write(tmp_path, "jobs: []\n", "empty.yaml"))


def test_directory_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_schedules(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no schedules"):
        load_schedules(tmp_path)
    a = _write(tmp_path, GOOD, "a.yaml")
    b = _write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError) as err:
        load_schedules(tmp_path)
    assert str(err.value).startswith(f"{b}: name: job 'daily' is also defined in {a}")


def test_disabled_jobs_are_not_loaded(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "a.yaml")
    _write(tmp_path, GOOD.replace("daily", "paused") + "enabled: false\n", "b.yaml")
    assert [j.name for j in load_schedules(tmp_path)] == ["daily"]


def test_sinks_and_notifiers_must_be_configured(tmp_path: Path) -> None:
    jobs = parse_schedule_file(_write(tmp_path, GOOD + "sinks: [sasquatch]\n"))
    check_against_settings(jobs, ["sasquatch"], [])
    with pytest.raises(ConfigError, match=r"job\.yaml: sinks: .*unknown sink 'sasquatch'"):
        check_against_settings(jobs, ["local-influx"], [])
    jobs = parse_schedule_file(_write(tmp_path, GOOD + "notifiers: [oncall]\n"))
    with pytest.raises(ConfigError, match=r"notifiers: .*unknown notifier 'oncall'"):
        check_against_settings(jobs, [], [])


@pytest.mark.parametrize(
    ("dow", "days"),
    [
        ("1", {"Mon"}), ("0", {"Sun"}), ("7", {"Sun"}), ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}), ("sat,sun", {"Sat", "Sun"}), ("5-7", {"Fri", "Sat", "Sun"}),
    ],
)  # fmt: skip
def test_cron_weekdays_use_crontab_numbering(dow: str, days: set[str]) -> None:
    trig = cron_trigger(f"0 14 * * {dow}")
    t = datetime(2025, 11, 17, tzinfo=UTC)
    seen = set()
    for _ in range(14):
        t = trig.get_next_fire_time(None, t)
        seen.add(t.strftime("%a"))
        t += timedelta(minutes=1)
    assert seen == days


def test_input_template_and_glob(tmp_path: Path) -> None:
    for inst in ("LSSTCam", "LATISS"):
        (tmp_path / inst / "20251121").mkdir(parents=True)
    job = JobSpec.model_validate({"name": "j", "kinds": ["bias"], "cron": "0 0 * * *",
                                  "input": str(tmp_path / "LSSTCam" / "{day_obs}")})  # fmt: skip
    assert job.input_dirs("20251121") == [tmp_path / "LSSTCam" / "20251121"]
    assert job.input_dirs("20251120") == []  # not there (yet)
    assert job.input_dirs("20251121", override=str(tmp_path / "*" / "{day_obs}")) == [
        tmp_path / "LATISS" / "20251121", tmp_path / "LSSTCam" / "20251121",
    ]  # fmt: skip
    assert job.input_dirs("20251121", override=tmp_path) == [tmp_path]
    assert JobSpec.model_validate({"name": "j", "kinds": ["bias"], "cron": "0 0 * * *"}
                                  ).input_dirs("20251121") == []  # fmt: skip
