"""Scheduled jobs: ``schedules/*.yaml``, validated once at start-up (DESIGN.md §7).

A file holds one job (a mapping) or several (``jobs:`` list). A job says *what* to
process (``kinds``, ``instrument``, ``detectors``, ``input`` or ``butler: {repo,
collections}``, a Butler query needing calibmon[butler]), *when* (a five-field
``cron`` expression in ``timezone``), *which day_obs* a firing targets (``day_obs:
previous`` for a daily job after the 12:00 UTC rollover, ``current`` for a polling job)
and how far back it looks for unfinished days (``catch_up_days``). Each firing processes
every day_obs of its window that the run ledger does not hold as finished, so a missed
firing, a restart or a late transfer is caught up and a finished day is never redone.

Kinds and what they mean here:

=========  =========================================================================
bias       daily biases                      → discovery kind ``bias``
dark       daily darks                       → ``dark`` (bright pixels/columns, defects)
flat       daily flats                       → ``flat``
gain       gain from the daily flat pairs    → ``flat``
ptc        a PTC ramp (flat pairs at many exposure times) → ``ptc``
linearity  linearity from the PTC ramp       → ``ptc``
defects    defect fraction (darks + flats)   → ``dark``, ``flat``
verify     cp_verify-style checks of the day → ``bias``, ``dark``, ``flat``
staleness  no processing: report ``expected`` calibrations missing from the store
=========  =========================================================================

A bad file fails with one line naming the file and the key
(``schedules/daily.yaml: jobs[0].cron: invalid cron expression ...``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from calibmon.errors import ConfigError

Kind = Literal[
    "bias", "dark", "flat", "gain", "ptc", "linearity", "defects", "verify", "staleness"
]  # fmt: skip

# Schedule kind -> discovery kinds (calibmon.io.discover GroupKey.kind) it processes.
DISCOVER_KINDS: dict[str, tuple[str, ...]] = {
    "bias": ("bias",),
    "dark": ("dark",),
    "flat": ("flat",),
    "gain": ("flat",),
    "ptc": ("ptc",),
    "linearity": ("ptc",),
    "defects": ("dark", "flat"),
    "verify": ("bias", "dark", "flat"),
    "staleness": (),
}

# Expected kind -> (records column, value) whose presence in the store shows it arrived.
EXPECTED_EVIDENCE: dict[str, tuple[str, str]] = {
    "bias": ("calib_type", "bias"),
    "dark": ("calib_type", "dark"),
    "flat": ("calib_type", "flat"),
    "gain": ("metric", "gain"),
    "ptc": ("calib_type", "ptc"),
    "linearity": ("metric", "linearity_turnoff"),
    "defects": ("metric", "defect_fraction"),
    "verify": ("calib_type", "verify"),
}

# Expected kind -> calib_type the alert engine's staleness rule looks for (stale_<type>).
ALERT_CALIB_TYPE: dict[str, str] = {
    "bias": "bias",
    "dark": "dark",
    "flat": "flat",
    "gain": "flat",
    "ptc": "ptc",
    "linearity": "ptc",
    "defects": "defects",
    "verify": "verify",
}

_JOB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# crontab weekday numbers: 0 and 7 are Sunday. APScheduler 3.x counts 0 = Monday (its
# issue #286), so numeric weekdays are translated to names before they reach it.
_CRONTAB_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DETECTOR = re.compile(r"^R(\d\d|XX)_S(\d\d|G[01]|W[01])$")


class ExpectedCalib(BaseModel):
    """A calibration the staleness check expects: at least one record of ``kind`` with a
    day_obs within the last ``within_days`` day_obs (1 = that very day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bias", "dark", "flat", "gain", "ptc", "linearity", "defects", "verify"]
    within_days: int = Field(1, ge=1, le=366)


class ButlerSource(BaseModel):
    """A job's input as a Butler query (needs calibmon[butler]): the day's bias/dark/flat
    ``raw`` datasets of ``collections`` (default ``<instrument>/raw/all``) in ``repo``, as
    ``calibmon run --butler`` selects them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = Field(min_length=1)
    collections: tuple[str, ...] = ()

    @field_validator("collections", mode="before")
    @classmethod
    def _collections_list(cls, v: Any) -> Any:
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v


class JobSpec(BaseModel):
    """One scheduled job (one entry of ``schedules/*.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_JOB_NAME, max_length=64)
    description: str = ""
    enabled: bool = True
    kinds: tuple[Kind, ...] = Field(min_length=1)
    instrument: str | None = None
    detectors: Literal["all"] | tuple[str, ...] = "all"
    input: str | None = None
    butler: ButlerSource | None = None  # instead of input: a Butler query
    cron: str
    timezone: str = "UTC"
    day_obs: Literal["previous", "current"] = "previous"
    catch_up_days: int = Field(3, ge=0, le=60)
    settle_seconds: float = Field(0.0, ge=0)
    max_attempts: int = Field(3, ge=1, le=100)
    misfire_grace_seconds: int = Field(3600, ge=1)
    sinks: tuple[str, ...] | None = None  # None: every configured sink; (): none
    notifiers: tuple[str, ...] | None = None
    expected: tuple[ExpectedCalib, ...] = ()

    _source: Path | None = PrivateAttr(default=None)

    # -- validation ------------------------------------------------------------------
    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("detectors", mode="before")
    @classmethod
    def _detectors_list(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "all":
            v = [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("detectors")
    @classmethod
    def _detector_names(cls, v: Any) -> Any:
        if v == "all":
            return v
        if not v:
            raise ValueError("list at least one detector, or write 'all'")
        for name in v:
            if not _DETECTOR.match(name):
                raise ValueError(f"{name!r} is not a detector name like R22_S11")
        return tuple(v)

    @field_validator("expected", mode="before")
    @classmethod
    def _expected_short(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            return [{"kind": e} if isinstance(e, str) else e for e in v]
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("input")
    @classmethod
    def _input_template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            v.format(day_obs="20000101")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"input may use only the {{day_obs}} placeholder, got {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        try:
            cron_trigger(self.cron, self.timezone)
        except ValueError as exc:
            raise ValueError(f"cron: invalid cron expression {self.cron!r}: {exc}") from exc
        if "staleness" in self.kinds:
            if len(self.kinds) > 1:
                raise ValueError("kinds: 'staleness' is a job of its own, not mixed with others")
            if not self.expected:
                raise ValueError("expected: a staleness job lists the calibrations it expects")
        elif self.expected:
            raise ValueError("expected: only a staleness job has 'expected'")
        if self.butler is not None and self.input is not None:
            raise ValueError("butler: a job reads a directory (input) or a Butler, not both")
        kinds = [e.kind for e in self.expected]
        if len(set(kinds)) != len(kinds):
            raise ValueError("expected: each kind at most once")
        return self

    # -- derived -----------------------------------------------------------------------
    @property
    def source(self) -> Path | None:
        """The YAML file this job came from."""
        return self._source

    @property
    def is_staleness(self) -> bool:
        return "staleness" in self.kinds

    @property
    def discover_kinds(self) -> tuple[str, ...]:
        """Discovery kinds this job processes, in a stable order."""
        out: list[str] = []
        for k in self.kinds:
            for d in DISCOVER_KINDS[k]:
                if d not in out:
                    out.append(d)
        return tuple(out)

    @property
    def detector_list(self) -> list[str] | None:
        """Detector names, or None for all."""
        return None if self.detectors == "all" else list(self.detectors)

    def input_dirs(self, day_obs: str, override: str | Path | None = None) -> list[Path]:
        """Existing directories holding ``day_obs``'s raws (``{day_obs}`` filled in and
        glob patterns expanded; ``override`` is ``serve --input``)."""
        template = str(override) if override is not None else self.input
        if template is None:
            return []
        path = template.format(day_obs=day_obs)
        if any(c in path for c in "*?["):
            root = Path(path).anchor or "."
            rel = str(Path(path).relative_to(root)) if Path(path).is_absolute() else path
            return sorted(p for p in Path(root).glob(rel) if p.is_dir())
        p = Path(path)
        return [p] if p.is_dir() else []

    def trigger(self, tick_seconds: float | None = None, start: datetime | None = None):
        """The APScheduler trigger: the cron expression, or (testing only) an interval."""
        from apscheduler.triggers.interval import IntervalTrigger

        if tick_seconds:
            return IntervalTrigger(seconds=tick_seconds, start_date=start, timezone="UTC")
        return cron_trigger(self.cron, self.timezone)


def _crontab_weekdays(field: str) -> str:
    """Translate a crontab day-of-week field (0/7 = Sunday) to APScheduler weekday names."""
    out: list[str] = []
    for token in field.split(","):
        base, _, step_text = token.partition("/")
        if not any(ch.isdigit() for ch in base) and not step_text:
            out.append(token)  # '*', 'mon', 'mon-fri': same meaning in both
            continue
        step = int(step_text) if step_text else 1
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = int(a), int(b)
        else:
            lo = int(base)
            hi = 6 if step_text else lo
        if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi and step >= 1):
            raise ValueError(f"day of week {token!r} is not 0-7 (0 and 7 are Sunday)")
        for n in range(lo, hi + 1, step):
            name = _CRONTAB_WEEKDAYS[n]
            if name not in out:
                out.append(name)
    return ",".join(out)


def cron_trigger(expr: str, timezone: str = "UTC"):
    """APScheduler CronTrigger from a standard five-field crontab expression (crontab
    weekday numbering: 0 and 7 are Sunday, 1 is Monday)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} must have five fields (minute hour day month weekday)")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_weekdays(dow),
        timezone=ZoneInfo(timezone),
    )  # fmt: skip


def _format_error(exc: ValidationError, source: str, prefix: str) -> str:
    errs = exc.errors()
    first = errs[0]
    parts = tuple(first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    # checks across keys (model validators) name their key as "key: message"
    key_first = re.match(r"^([a-z_]+): (.*)$", msg, re.DOTALL)
    if not parts and key_first:
        parts, msg = (key_first.group(1),), key_first.group(2)
    loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    loc = loc.lstrip(".") or "(top level)"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def parse_schedule_file(path: str | Path) -> list[JobSpec]:
    """Jobs of one YAML file; :class:`ConfigError` naming the file and key when invalid."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read schedule file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML") from exc
    if isinstance(data, dict) and set(data) == {"jobs"}:
        items, prefix = data["jobs"], "jobs"
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{path}: jobs: must be a non-empty list of jobs")
    elif isinstance(data, dict):
        items, prefix = [data], None
    else:
        raise ConfigError(f"{path}: must hold a job (mapping) or 'jobs:' with a list of jobs")
    jobs: list[JobSpec] = []
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]" if prefix else ""
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: {where or '(top level)'}: a job must be a mapping")
        try:
            job = JobSpec.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(_format_error(exc, str(path), where)) from None
        job._source = path
        jobs.append(job)
    return jobs


def load_schedules(directory: str | Path) -> list[JobSpec]:
    """Every enabled job in ``directory/*.yaml`` (and ``*.yml``), sorted by file.

    Raises :class:`ConfigError` for a missing/empty directory, an invalid file, or a job
    name used twice (naming both files).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"schedules directory {directory} does not exist")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise ConfigError(f"no schedules (*.yaml) in {directory}")
    seen: dict[str, Path] = {}
    jobs: list[JobSpec] = []
    for f in files:
        for job in parse_schedule_file(f):
            if job.name in seen:
                raise ConfigError(
                    f"{f}: name: job {job.name!r} is also defined in {seen[job.name]}"
                )
            seen[job.name] = f
            if job.enabled:
                jobs.append(job)
    return jobs


def check_against_settings(jobs: Sequence[JobSpec], sink_names: Sequence[str],
                           notifier_names: Sequence[str]) -> None:  # fmt: skip
    """Every sink/notifier a job names must be configured (ConfigError naming file+key)."""
    for job in jobs:
        for key, wanted, known in (
            ("sinks", job.sinks, sink_names),
            ("notifiers", job.notifiers, notifier_names),
        ):
            for name in wanted or ():
                if name not in known:
                    have = ", ".join(known) or "none configured"
                    raise ConfigError(
                        f"{job.source}: {key}: job {job.name!r} names unknown {key[:-1]} "
                        f"{name!r} ({have})"
                    )
