"""Configuration of the alert engine and its notifiers (DESIGN.md §3 ``notifiers:``, §6).

``notifiers:`` entries are a union discriminated on ``type``; unknown keys are refused::

    notifiers:
      - name: oncall
        type: alertmanager              # alertmanager | webhook | email
        url: http://127.0.0.1:9093
      - name: chat
        type: webhook
        url: https://hooks.example.org/calibmon
        secret_env: CALIBMON_WEBHOOK_SECRET   # HMAC-SHA256 key → X-Calibmon-Signature
      - name: mail
        type: email
        host: smtp.example.org
        port: 587
        starttls: true
        from: calibmon@example.org
        to: [calib-oncall@example.org]
        username_env: SMTP_USER
        password_env: SMTP_PASSWORD
        min_severity: warning

Secrets come from the environment (``*_env``) or a file (``*_file``), are read once when
the model is validated (a missing one is a validation error: a bad deployment fails at
start-up, not at the first page) and are kept as :class:`~pydantic.SecretStr`.

The ``alerts:`` mapping of ``calibmon.yaml`` is :class:`AlertsConfig` (all keys optional)::

    alerts:
      baseline_nights: 10        # N good nights in a baseline (overrides the catalogue)
      min_baseline_nights: 3
      lookback_nights: 30        # nights of history walked for the baseline
      clear_for: 2               # H: consecutive clear evaluations to resolve
      clear_band: 0.8            # clear = back inside 0.8 × the drift band
      nsigma: 5.1                # k: significance of every rule (see below)
      group_by: detector         # one notification per detector (or per rule+detector)
      rules:
        gain_drift: {for: 2, severity: critical}
        bias_level_jump: {enabled: false}
      expected:                  # staleness (the scheduler may pass its own)
        - {instrument: LSSTCam, calib_type: bias}

:class:`~calibmon.config.Settings` holds it typed (``Settings.alerts``, and
``Settings.notifiers`` a list of :data:`NotifierConfig`); :func:`alerts_config` joins it
with the top-level ``notifiers``, ``known_bad`` and ``dashboard_url``. This module imports
nothing of :mod:`calibmon.config` (:class:`~calibmon.models.KnownBad` lives in
:mod:`calibmon.models`, below both).

``nsigma`` (k) is how many of its own σ a value must be beyond a fixed limit (σ = the
record's ``error``) or away from its baseline (σ of the deviation: intrinsic scatter,
today's error and the baseline's uncertainty) to fire. The default spends the false-alarm
budget of 1e-5 per amp-night (≈ one false page a month for LSSTCam's 3216 amps) over the
24 amp-level rules of the shipped catalogue: Φ⁻¹(1 − 1e-5 / (2·24)) = 5.06 → 5.1
(:func:`calibmon.alerts.rules.nsigma_for_budget`). A threshold's own ``nsigma`` wins.

Severities: ``info`` is information, not a page (dark current or read noise falling).
Alertmanager receives every severity (``deploy/alertmanager/alertmanager.yml`` routes
``info`` to a null receiver: visible in its UI only); the webhook and e-mail notifiers
default to ``min_severity: warning`` so info never reaches on-call through them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from calibmon.alerts.rules import DEFAULT_NSIGMA, Expectation
from calibmon.errors import ConfigError
from calibmon.models import KnownBad
from calibmon.secrets import LoginFromEnv, TokenFromEnv, held_secrets, read_secret

Severity = Literal["info", "warning", "critical"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _check_http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials must not be in the URL; use the *_env or *_file settings")
    return v


class _NotifierBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=_NAME, description="unique notifier name (outbox key)")]
    min_severity: Severity = "info"
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    #: re-post still-firing alerts after every evaluation (Alertmanager forgets otherwise)
    @property
    def refresh(self) -> bool:
        return False

    def secret_values(self) -> list[str]:
        """Plain secret values, for log redaction."""
        return held_secrets(self)


class AlertmanagerConfig(_NotifierBase, LoginFromEnv, TokenFromEnv):
    """Alertmanager API v2: ``POST {url}/api/v2/alerts``.

    ``alert_ttl_s``: the ``endsAt`` given to a firing alert on each post. calibmon
    evaluates once per night, so this must outlast the gap between evaluations
    (Alertmanager's own default, ``resolve_timeout`` 5 min, would resolve the alert
    minutes after it fired). If calibmon stops evaluating, the alert ends after it.
    """

    type: Literal["alertmanager"]
    url: str
    alert_ttl_s: Annotated[float, Field(gt=0)] = 36 * 3600.0
    re_post: bool = True
    extra_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v).rstrip("/")

    @property
    def refresh(self) -> bool:
        return self.re_post


class WebhookConfig(_NotifierBase):
    """A generic JSON webhook: ``POST url`` with the notification as JSON.

    With ``secret_env``/``secret_file`` the body is signed: header
    ``X-Calibmon-Signature: sha256=<hex HMAC-SHA256 of the raw body>``.
    """

    type: Literal["webhook"]
    url: str
    min_severity: Severity = "warning"  # info is not a page (module docstring)
    secret_env: str | None = None
    secret_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    include_trends: bool = False

    _secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v)

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k.lower() in ("authorization", "cookie", "x-api-key"):
                raise ValueError(f"header {k} carries a secret; it must not be in the YAML")
        return v

    @model_validator(mode="after")
    def _load_secrets(self) -> WebhookConfig:
        self._secret = read_secret(self.secret_env, self.secret_file, "secret")
        return self

    @property
    def secret(self) -> SecretStr | None:
        return self._secret


class EmailConfig(_NotifierBase, LoginFromEnv):
    """SMTP e-mail (plain text + HTML with inline trend plots)."""

    type: Literal["email"]
    host: str
    min_severity: Severity = "warning"  # info is not a page (module docstring)
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    from_addr: str = Field(alias="from")
    to: Annotated[list[str], Field(min_length=1)]
    starttls: bool = False
    ssl: bool = False
    ca_file: Path | None = None  # CA bundle for a site's own SMTP certificate
    subject_prefix: str = "[calibmon]"
    trend_plots: bool = True

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailConfig:
        if self.starttls and self.ssl:
            raise ValueError("choose starttls or ssl, not both")
        return self


NotifierConfig = Annotated[
    AlertmanagerConfig | WebhookConfig | EmailConfig, Field(discriminator="type")
]
"""One entry of ``notifiers:`` in ``calibmon.yaml``."""

_NOTIFIERS: TypeAdapter[list[NotifierConfig]] = TypeAdapter(list[NotifierConfig])


def parse_notifier_configs(data: object) -> list[NotifierConfig]:
    """Validate a ``notifiers:`` list (raises ``pydantic.ValidationError``), names unique."""
    out = _NOTIFIERS.validate_python(data or [])
    seen: set[str] = set()
    for n in out:
        if n.name in seen:
            raise ValueError(f"notifiers: name {n.name!r} is used twice")
        seen.add(n.name)
    return out


class RuleOverride(BaseModel):
    """Per-rule settings in ``alerts.rules.<rule>`` (override the catalogue)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    severity: Severity | None = None
    for_evaluations: int | None = Field(None, ge=1, alias="for")
    clear_for: int | None = Field(None, ge=1)
    clear_band: float | None = Field(None, gt=0, le=1)
    baseline_nights: int | None = Field(None, ge=1)
    min_baseline_nights: int | None = Field(None, ge=1)


class DeliveryConfig(BaseModel):
    """Retries of the notification outbox.

    Within one delivery call a failing notifier is tried ``max_attempts`` times, waiting
    ``backoff_s`` between tries; then its notifications wait ``retry_after_s`` (doubling per
    failed call up to ``max_retry_after_s``) for the next call. Notifications older than
    ``expire_after_s`` are given up (kept in the store with the last error).
    """

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1)
    backoff_s: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0])
    retry_after_s: float = Field(60.0, ge=0)
    max_retry_after_s: float = Field(3600.0, ge=0)
    expire_after_s: float = Field(3 * 86400.0, gt=0)


class AlertsConfig(BaseModel):
    """Everything the alert engine is configured with (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    baseline_nights: int | None = Field(None, ge=1)
    min_baseline_nights: int | None = Field(None, ge=1)
    lookback_nights: int = Field(30, ge=2)
    clear_for: int = Field(2, ge=1)
    clear_band: float = Field(0.8, gt=0, le=1)
    nsigma: float = Field(DEFAULT_NSIGMA, ge=1, le=20)
    pool_sigma: bool = True
    trend_nights: int = Field(30, ge=2)
    recent_nights: int = Field(7, ge=0)
    group_by: Literal["detector", "rule"] = "detector"
    rules: dict[str, RuleOverride] = Field(default_factory=dict)
    expected: list[Expectation] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    # from Settings (top-level keys of calibmon.yaml)
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    known_bad: list[KnownBad] = Field(default_factory=list)
    dashboard_url: str = "http://localhost:3000/d/calibmon-amp"

    @field_validator("notifiers")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        names = [n.name for n in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"notifier name(s) used twice: {', '.join(sorted(dup))}")
        return v

    def secret_values(self) -> list[str]:
        return [s for n in self.notifiers for s in n.secret_values()]


def alerts_config(settings: Any) -> AlertsConfig:
    """The :class:`AlertsConfig` the engine runs with.

    ``settings`` is a :class:`~calibmon.config.Settings` (its typed ``alerts``, joined with
    the top-level ``notifiers``, ``known_bad`` and ``dashboard_url``), an
    :class:`AlertsConfig` (returned as is) or a mapping of ``alerts:`` keys (validated).
    Raises :class:`ConfigError` naming the key."""
    if isinstance(settings, AlertsConfig):
        return settings
    if isinstance(settings, dict):
        return _validate(dict(settings), "alerts")
    alerts = getattr(settings, "alerts", None)
    joined: dict[str, Any] = {
        "notifiers": list(getattr(settings, "notifiers", []) or []),
        "known_bad": list(getattr(settings, "known_bad", []) or []),
    }
    if getattr(settings, "dashboard_url", None):
        joined["dashboard_url"] = settings.dashboard_url
    if isinstance(alerts, AlertsConfig):
        if not all(isinstance(n, _NotifierBase) for n in joined["notifiers"]) or not all(
            isinstance(k, KnownBad) for k in joined["known_bad"]
        ):
            return _validate({**alerts.model_dump(exclude_unset=True, by_alias=True),
                              **joined}, "config")  # fmt: skip
        return alerts.model_copy(update=joined)
    return _validate({**dict(alerts or {}), **joined}, "config")


def _validate(data: dict[str, Any], source: str) -> AlertsConfig:
    """``AlertsConfig.model_validate`` with one :class:`ConfigError` line naming the key."""
    data["known_bad"] = [
        kb.model_dump() if isinstance(kb, BaseModel) else kb for kb in data.get("known_bad", [])
    ]
    try:
        return AlertsConfig.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if not key.startswith(("notifiers", "known_bad", "dashboard_url")):
            key = f"alerts.{key}"
        raise ConfigError(f"config error in {source}: {key}: {msg}") from None


__all__ = [
    "AlertmanagerConfig",
    "AlertsConfig",
    "DeliveryConfig",
    "EmailConfig",
    "KnownBad",
    "NotifierConfig",
    "RuleOverride",
    "WebhookConfig",
    "alerts_config",
    "parse_notifier_configs",
]
