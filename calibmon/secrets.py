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
