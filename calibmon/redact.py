"""Remove secrets from text before it is logged, stored or raised.

One plain function, :func:`redact`, the only one in calibmon: sinks and notifiers (error
messages, the store's ``last_error``) and the logging handler (:mod:`calibmon.logs`) use
it. It sits at the bottom of the package (standard library only) so every layer may. It removes, in this order:

1. every known secret value (and its URL-encoded forms), e.g. a password read from
   ``$INFLUX_PASSWORD`` or the base64 ``user:password`` of a Basic header;
2. URL user-info: ``http://user:pw@host`` → ``http://***@host``;
3. credential query parameters: ``?u=x&p=secret`` → ``?u=x&p=***`` (``p``, ``password``,
   ``token``, ``access_token``, ``api_key``, ``secret``, ...);
4. ``Authorization`` header values: ``Authorization: Bearer abc`` → ``Authorization: Bearer ***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@?#'\"]+@")
_SECRET_PARAMS = (
    "p",
    "pw",
    "pwd",
    "passwd",
    "password",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "api-key",
    "secret",
    "client_secret",
    "auth",
    "authorization",
    "sig",
    "signature",
)
_QUERY_PARAM = re.compile(
    r"(?P<key>[?&;](?:" + "|".join(re.escape(p) for p in _SECRET_PARAMS) + r")=)[^&;#\s'\"]*",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<key>authorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|token|basic)\s+)?)[^\s'\",}]+",
    re.IGNORECASE,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with secret values, URL user-info and credential parameters masked.

    Parameters
    ----------
    text : str
        Any message: an exception text, a log line, a URL.
    secrets : iterable of str
        Known secret values (passwords, tokens). Empty strings and ``None`` are ignored.
        Longer secrets are replaced first, so one secret containing another is fully masked.

    Returns
    -------
    str
        The text with every secret replaced by ``***``.
    """
    if not text:
        return text
    values: set[str] = set()
    for s in secrets:
        if not s:
            continue
        values.update({s, quote(s, safe=""), quote_plus(s)})
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    text = _QUERY_PARAM.sub(lambda m: m.group("key") + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, text)
    return text
