"""HTTP at the edges, shared by sinks and notifiers: which statuses are worth a retry,
and one call with requests' errors translated into the caller's own error type.

Standard library and ``requests`` only; no calibmon layer above it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

TRANSIENT_4XX: frozenset[int] = frozenset({408, 429})  # Request Timeout, Too Many Requests


def status_is_transient(status: int) -> bool:
    """True for HTTP statuses worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests.

    Every other status >= 400 means the server refused the request and a retry won't help.
    """
    return status >= 500 or status in TRANSIENT_4XX


def http_request(
    session: requests.Session,
    method: str,
    url: str,
    timeout_s: float,
    redact: Callable[[str], str],
    unavailable: Callable[[str], Exception],
    **kwargs: Any,
) -> requests.Response:
    """One HTTP call with requests' errors translated at the boundary.

    A timeout (``timeout_s`` seconds), a refused connection or any transport error raises
    ``unavailable(message)`` (the caller's "retry later" error, e.g.
    :class:`~calibmon.errors.SinkUnavailable`); the message is passed through ``redact``
    first. Any HTTP answer is returned as is: classify it with :func:`status_is_transient`.
    """
    try:
        return session.request(method, url, timeout=timeout_s, **kwargs)
    except requests.Timeout as exc:
        raise unavailable(redact(f"timeout after {timeout_s} s: {exc}")) from exc
    except requests.ConnectionError as exc:
        raise unavailable(redact(f"cannot connect: {exc}")) from exc
    except requests.RequestException as exc:
        raise unavailable(redact(f"request failed: {exc}")) from exc
