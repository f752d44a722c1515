"""The store's picture tables, ``amp_images`` and ``ptc_curves``: their blob formats, the
codec and the readers (the pipeline fills them, the report draws them).

Blob formats
------------
``amp_images``
    one row per (instrument, day_obs, detector, amp, kind); ``kind`` is ``bias`` (adu,
    overscan-corrected combined bias), ``dark`` (electron/s) or ``flat`` (normalised to
    the amp's clipped mean). ``data`` is the amp's *data section* (DATASEC) of the
    combined image, block-averaged ``bin``×``bin``, as little-endian float32 bytes in C
    order, ``n_rows``×``n_cols``, in **readout order** (the raw array's orientation: row 0
    is the first row read out, column 0 the first data column after the prescan). NaN
    marks pixels without data. ``detsec`` is the amp's ``DETSEC`` header value in unbinned
    CCD pixels (``[x1:x2,y1:y2]``, 1-based, x1 > x2 or y1 > y2 meaning that axis is
    flipped); the report uses it to place and orient the amp. Use
    :func:`encode_amp_image` / :func:`decode_amp_image`.
``ptc_curves``
    one row per (instrument, day_obs, detector, amp); ``data`` is JSON with equal-length
    lists ``exptime_s`` (s), ``mu_adu`` (mean signal of the pair, adu), ``var_adu2``
    (variance of the pair difference / 2, adu²), ``model_var_adu2`` (the fitted PTC at
    ``mu_adu``, adu²; null where not evaluated), ``used`` (bool: point kept by the fit) and
    ``residual_frac`` (linearity: mu / linear fit − 1; null where not evaluated). Extra
    keys (e.g. ``gain``, ``noise_e``, ``a00``, ``turnoff_adu``) are kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibmon.io.detectors import detector_name

IMAGE_KINDS: tuple[str, ...] = ("bias", "dark", "flat")
IMAGE_UNITS: dict[str, str] = {"bias": "adu", "dark": "electron/s", "flat": "normalised"}


def encode_amp_image(image: np.ndarray) -> bytes:
    """``(n_rows, n_cols)`` array → the ``amp_images.data`` blob (little-endian float32, C)."""
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"amp image must be 2-D, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def decode_amp_image(blob: bytes, n_rows: int, n_cols: int) -> np.ndarray:
    """The ``amp_images.data`` blob → ``(n_rows, n_cols)`` float32 array (readout order)."""
    a = np.frombuffer(blob, dtype="<f4")
    if a.size != n_rows * n_cols:
        raise ValueError(f"amp image blob holds {a.size} values, not {n_rows}x{n_cols}")
    return a.reshape(n_rows, n_cols).astype(np.float32)


@dataclass(frozen=True)
class AmpImage:
    """One binned amp image of the day (see the module docstring)."""

    instrument: str
    day_obs: str
    detector: int
    amp: str
    kind: str
    bin: int
    image: np.ndarray  # (n_rows, n_cols) float32, readout order
    detsec: str | None


def amp_images(
    store, instrument: str, day_obs: str, kind: str, detectors: Sequence[int] | None = None
) -> list[AmpImage]:
    """The day's binned amp images of one kind (``bias``/``dark``/``flat``)."""
    sql = (
        "SELECT detector, amp, bin, n_rows, n_cols, data, detsec FROM amp_images"
        " WHERE instrument=? AND day_obs=? AND kind=?"
    )
    params: list[Any] = [instrument, day_obs, kind]
    if detectors is not None:
        sql += f" AND detector IN ({','.join('?' * len(detectors))})"
        params += list(detectors)
    out = []
    for r in store.query(sql + " ORDER BY detector, amp", params):
        out.append(
            AmpImage(
                instrument,
                day_obs,
                int(r["detector"]),
                r["amp"],
                kind,
                int(r["bin"]),
                decode_amp_image(r["data"], int(r["n_rows"]), int(r["n_cols"])),
                r["detsec"],
            )
        )
    return out


@dataclass(frozen=True)
class PtcCurve:
    """One amp's PTC points and fit (see the module docstring)."""

    instrument: str
    day_obs: str
    detector: int
    detector_name: str
    amp: str
    exptime_s: list[float]
    mu_adu: list[float]
    var_adu2: list[float]
    model_var_adu2: list[float]
    used: list[bool]
    residual_frac: list[float]
    extra: dict[str, Any]


def _floats(values: Any, n: int) -> list[float]:
    if not isinstance(values, list):
        return [math.nan] * n
    return [math.nan if v is None else float(v) for v in values] + [math.nan] * (n - len(values))


def ptc_curves(
    store, instrument: str, day_obs: str, detectors: Sequence[int] | None = None
) -> list[PtcCurve]:
    """The day's PTC curves, ordered by detector and amp."""
    sql = "SELECT detector, amp, data FROM ptc_curves WHERE instrument=? AND day_obs=?"
    params: list[Any] = [instrument, day_obs]
    if detectors is not None:
        sql += f" AND detector IN ({','.join('?' * len(detectors))})"
        params += list(detectors)
    out = []
    for r in store.query(sql + " ORDER BY detector, amp", params):
        d = json.loads(r["data"])
        n = len(d.get("mu_adu") or [])
        used = d.get("used") or [True] * n
        det = int(r["detector"])
        try:
            name = detector_name(instrument, det)
        except (IndexError, KeyError):
            name = str(det)
        known = ("exptime_s", "mu_adu", "var_adu2", "model_var_adu2", "used", "residual_frac")
        out.append(
            PtcCurve(
                instrument,
                day_obs,
                det,
                name,
                r["amp"],
                _floats(d.get("exptime_s"), n),
                _floats(d.get("mu_adu"), n),
                _floats(d.get("var_adu2"), n),
                _floats(d.get("model_var_adu2"), n),
                [bool(u) for u in used] + [False] * (n - len(used)),
                _floats(d.get("residual_frac"), n),
                {k: v for k, v in d.items() if k not in known},
            )
        )
    return out
