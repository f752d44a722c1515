"""Configuration: read and validated once at the edge, then passed down as objects.

Sources, in increasing priority: the YAML file (``--config`` or ``CALIBMON_CONFIG``),
the environment (``CALIBMON_*``, nested keys with ``__``: ``CALIBMON_NOMINAL_GAIN__ITL``),
command-line flags. Secrets never live in the YAML: sinks and notifiers name the
environment variable or file that holds them.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from calibmon import __version__
from calibmon.alerts.config import AlertsConfig, NotifierConfig
from calibmon.errors import ConfigError
from calibmon.models import KnownBad
from calibmon.sinks.config import SinkConfig, check_unique_names

_CONFIG_PATH: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "calibmon_config_path", default=None
)

# Nominal gains (e-/adu) used for read noise in electrons until a measured gain exists;
# LSSTCam sensor acceptance: ITL ≈ 1.6–1.8, e2v ≈ 1.4–1.6 e-/adu.
NOMINAL_GAIN_E_PER_ADU: dict[str, float] = {"ITL": 1.7, "E2V": 1.5}


class MinFrames(BaseModel):
    """Fewest frames a group needs to be measured (PTC: frames, i.e. 2 per pair)."""

    model_config = ConfigDict(extra="forbid")

    bias: int = Field(1, ge=1)
    dark: int = Field(1, ge=1)
    flat: int = Field(2, ge=2)
    # two pairs at two levels are a measurement (a mini-PTC such as LATISS's daily_PTC):
    # gain and noise with a00 from a prior; see science.ptc
    ptc: int = Field(4, ge=4)


class SlurmConfig(BaseModel):
    """Worker jobs asked from Slurm by dask-jobqueue (``dask: {cluster: slurm, slurm: ...}``).

    Each job runs ``processes`` dask workers sharing ``cores`` cores and ``memory``;
    ``jobs`` is how many such jobs are requested (the cluster's size)."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = None  # Slurm partition (``-p``); alias ``partition``
    partition: str | None = None
    account: str | None = None
    cores: int = Field(4, ge=1)
    processes: int = Field(4, ge=1)
    memory: str = "6GiB"  # per job, as dask-jobqueue reads it ("6GiB", "16GB")
    walltime: str = "02:00:00"
    jobs: int = Field(1, ge=1)
    job_extra_directives: list[str] = Field(default_factory=list)
    local_directory: str | None = None  # worker scratch (spill) on the node, e.g. $TMPDIR
    log_directory: str | None = None  # where the jobs' stdout/stderr go
    python: str | None = None  # interpreter with calibmon installed (default: this one)

    @model_validator(mode="after")
    def _one_partition(self) -> SlurmConfig:
        if self.queue and self.partition and self.queue != self.partition:
            raise ValueError("give queue or partition (the same thing), not both")
        if self.processes > self.cores:
            raise ValueError(f"processes ({self.processes}) cannot exceed cores ({self.cores})")
        return self


class DaskConfig(BaseModel):
    """Where ``executor: dask`` runs (calibmon.service.cluster opens it).

    ``local``: a LocalCluster of ``workers`` processes on this machine; ``address``: an
    existing scheduler (``tcp://host:8786``); ``slurm``: worker jobs from dask-jobqueue."""

    model_config = ConfigDict(extra="forbid")

    cluster: Literal["local", "address", "slurm"] = "local"
    address: str | None = None
    connect_timeout_s: float = Field(10.0, gt=0, le=600)  # reaching the scheduler, s
    slurm: SlurmConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DaskConfig:
        if self.cluster == "address" and not self.address:
            raise ValueError("cluster: address needs address: tcp://HOST:PORT")
        if self.address and not re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://\S+", self.address):
            raise ValueError(f"address {self.address!r} must look like tcp://HOST:PORT")
        if self.cluster == "slurm" and self.slurm is None:
            self.slurm = SlurmConfig()
        if self.cluster != "slurm" and self.slurm is not None:
            raise ValueError(f"slurm: keys given but cluster is {self.cluster!r}")
        return self


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file named by ``--config``/``CALIBMON_CONFIG`` (lowest priority)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _CONFIG_PATH.get()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path}{where} is not valid YAML") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys")
        return data


class Settings(BaseSettings):
    """Everything calibmon is configured with (DESIGN.md §3 minimal keys and more)."""

    model_config = SettingsConfigDict(
        env_prefix="CALIBMON_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    store: Path | None = None
    instrument: str | None = None
    # Instruments accepted from INSTRUME besides the known ones (io/validate.py); their
    # detectors are numbered with LSSTCam's table.
    instruments_extra: list[str] = Field(default_factory=list)
    nominal_gain: dict[str, float] = Field(default_factory=lambda: dict(NOMINAL_GAIN_E_PER_ADU))
    min_frames: MinFrames = Field(default_factory=MinFrames)
    workers: int | None = Field(None, ge=1)
    executor: Literal["process", "dask", "serial"] = "process"
    dask_address: str | None = None
    dask: DaskConfig | None = None  # executor dask: local | address | slurm
    catalogue_dir: Path | None = None
    sinks: list[SinkConfig] = Field(default_factory=list)
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    known_bad: list[KnownBad] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    schedules_dir: Path | None = None
    dashboard_url: str = "http://localhost:3000/d/calibmon-amp"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(9120, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    jobstore: Path | None = None  # APScheduler job store (default: beside the store)

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, v: list[SinkConfig]) -> list[SinkConfig]:
        check_unique_names(v)
        return v

    @field_validator("notifiers")
    @classmethod
    def _unique_notifiers(cls, v: list[Any]) -> list[Any]:
        names = [n.name for n in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"notifier name(s) used twice: {', '.join(dup)}")
        return v

    @field_validator("alerts")
    @classmethod
    def _alerts_own_keys(cls, v: AlertsConfig) -> AlertsConfig:
        """``notifiers``, ``known_bad`` and ``dashboard_url`` are top-level keys."""
        misplaced = sorted(v.model_fields_set & {"notifiers", "known_bad", "dashboard_url"})
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} belong at the top level, not under alerts")
        return v

    @field_validator("instruments_extra")
    @classmethod
    def _instrument_names(cls, v: list[str]) -> list[str]:
        """Each a plain name (letters, digits, ``_``/``-``, 2–32 characters), no repeats."""
        seen: set[str] = set()
        for name in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{1,31}", name):
                raise ValueError(f"instrument name {name!r} must be 2-32 letters/digits/_/-")
            if name.upper() in seen:
                raise ValueError(f"instrument {name!r} listed twice")
            seen.add(name.upper())
        return v

    @field_validator("nominal_gain")
    @classmethod
    def _gains_positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, g in v.items():
            if not 0.1 < g < 20:
                raise ValueError(f"nominal gain for {k} must be in (0.1, 20) e-/adu, got {g}")
        return {k.upper(): g for k, g in v.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # -- derived ---------------------------------------------------------------------
    def store_path(self) -> Path:
        from calibmon.store.sqlite import default_store_path

        return self.store or default_store_path()

    def secret_values(self) -> list[str]:
        """Every secret the configuration holds (for redaction of logs and messages)."""
        from calibmon.sinks.config import secret_values as sink_secret_values

        out = secret_values_of(self) + sink_secret_values(self.sinks)
        return out + [s for n in self.notifiers for s in n.secret_values()]

    def science_hash(self) -> str:
        """Hash of the settings that change numbers (not sinks, store or secrets)."""
        keep = {"nominal_gain": self.nominal_gain, "min_frames": self.min_frames.model_dump()}
        if self.catalogue_dir:
            keep["catalogue_dir"] = str(self.catalogue_dir)
        blob = json.dumps(keep, sort_keys=True) + __version__
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def secret_values_of(obj: Any) -> list[str]:
    """All ``SecretStr`` values inside a (nested) pydantic model or container."""
    out: list[str] = []
    if isinstance(obj, SecretStr):
        v = obj.get_secret_value()
        if v:
            out.append(v)
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            out += secret_values_of(getattr(obj, name))
    elif isinstance(obj, dict):
        for v in obj.values():
            out += secret_values_of(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            out += secret_values_of(v)
    return out


def _format_validation_error(exc: ValidationError, source: str) -> str:
    # include_input=False: a secret mistakenly put in the YAML is never echoed back
    errs = exc.errors(include_input=False, include_url=False)
    first = errs[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"config error in {source}: {key}: {msg}{more}"


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from file < environment < ``overrides`` (flags; None values ignored).

    Raises :class:`ConfigError` with one line naming the key and the source.
    """
    path = config_path or os.environ.get("CALIBMON_CONFIG")
    p = Path(path) if path else None
    if p is not None and not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    token = _CONFIG_PATH.set(p)
    try:
        flags = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**flags)
    except ValidationError as exc:
        source = str(p) if p else "environment/flags"
        raise ConfigError(_format_validation_error(exc, source)) from None
    finally:
        _CONFIG_PATH.reset(token)
