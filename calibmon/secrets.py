"""Reading secrets (passwords, tokens, HMAC keys) from the environment or a file.

Secrets never live in ``calibmon.yaml``: configuration names the environment variable
(``*_env``) or the file (``*_file``) that holds them, and they are kept as ``SecretStr``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Self

from pydantic import BaseModel, PrivateAttr, SecretStr, model_validator

log = logging.getLogger(__name__)


def read_secret(env: str | None, file: Path | None, what: str) -> SecretStr | None:
    """The secret named by ``env`` (environment variable) or ``file``; env wins.

    A named environment variable that is not set gives None with a WARNING naming the
    variable (the server then answers without credentials and its refusal names the
    sink): a site whose InfluxDB needs no auth can keep the shipped ``*_env`` keys. A
    named file that cannot be read raises ``ValueError`` (a one-line config error): a
    path is an explicit choice. None when neither is given.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            if file is None:
                log.warning("%s: environment variable %s is not set; using none", what, env)
                return None
        else:
            return SecretStr(value)
    if file is not None:
        try:
            return SecretStr(Path(file).expanduser().read_text().strip())
        except OSError as exc:
            raise ValueError(f"{what}: cannot read {file}: {exc.strerror}") from None
    return None


def read_credentials(
    username_env: str | None, password_env: str | None, password_file: Path | None
) -> tuple[str | None, SecretStr | None]:
    """(username, password) for basic/SMTP login, both from the environment or a file.

    Raises ``ValueError`` when a password is configured without a username; an unset
    username variable means no login (with a WARNING).
    """
    if (password_env or password_file) and not username_env:
        raise ValueError("a password needs a username (username_env)")
    user = None
    if username_env:
        user = os.environ.get(username_env)
        if user is None:
            log.warning("username: environment variable %s is not set; no login", username_env)
            return None, None
    password = read_secret(password_env, password_file, "password")
    return user, password


class LoginFromEnv(BaseModel):
    """Config mixin: a login whose username and password come from the environment or a
    file (``username_env``, ``password_env``/``password_file``), see
    :func:`read_credentials`; the values are ``username`` and ``password``."""

    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None

    _username: str | None = PrivateAttr(default=None)
    _password: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_login(self) -> Self:
        self._username, self._password = read_credentials(
            self.username_env, self.password_env, self.password_file
        )
        return self

    @property
    def username(self) -> str | None:
        return self._username

    @property
    def password(self) -> SecretStr | None:
        return self._password


class TokenFromEnv(BaseModel):
    """Config mixin: a bearer token from ``token_env`` or ``token_file``
    (:func:`read_secret`); the value is ``token``."""

    token_env: str | None = None
    token_file: Path | None = None

    _token: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_token(self) -> Self:
        self._token = read_secret(self.token_env, self.token_file, "token")
        return self

    @property
    def token(self) -> SecretStr | None:
        return self._token


def held_secrets(model: BaseModel) -> list[str]:
    """Plain values of every ``SecretStr`` a config model holds in its private attributes
    (what the sinks and notifiers read from the environment), for redaction."""
    private = model.__pydantic_private__ or {}
    return [
        v.get_secret_value()
        for v in private.values()
        if isinstance(v, SecretStr) and v.get_secret_value()
    ]
