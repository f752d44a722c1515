"""Reading secrets (passwords, tokens, HMAC keys) from the environment or a file.

Secrets never live in ``calibmon.yaml``: configuration names the environment variable
(``*_env``) or the file (``*_file``) that holds them, and they are kept as ``SecretStr``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr


def read_secret(env: str | None, file: Path | None, what: str) -> SecretStr | None:
    """The secret named by ``env`` (environment variable) or ``file``; env wins.

    Raises ``ValueError`` (turned into a one-line config error naming the key) when the
    variable is not set or the file cannot be read; returns None when neither is given.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"{what}: environment variable {env} is not set")
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

    Raises ``ValueError`` when a named variable is missing or a password has no username.
    """
    user = None
    if username_env:
        user = os.environ.get(username_env)
        if user is None:
            raise ValueError(f"username_env: environment variable {username_env} is not set")
    password = read_secret(password_env, password_file, "password")
    if password is not None and user is None:
        raise ValueError("a password needs a username (username_env)")
    return user, password
