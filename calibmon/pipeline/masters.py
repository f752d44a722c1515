"""Master calibration products of one detector-day (``calibmon calibs build``; the
run around it — discovery, gain hints, registration — is
:func:`calibmon.service.build_calibs.build_calibs`).

Per detector and amplifier, one amp's stack at a time, with the pipeline's own reading
(:func:`calibmon.pipeline.read_corrected_stack`: per-row serial-overscan correction,
trim) and combining (:func:`calibmon.science.combine.clipped_mean_stack`, cp_pipe's
MEANCLIP):

bias
    clipped mean of the overscan-corrected biases, adu. Records the overscan read noise
    (``RDNOISE``, as ``read_noise_adu``) and the per-frame noise of the data area from
    frame pairs (``FRMNOISE``), which bias verification expects.
dark
    ``(clipped mean of (dark − master bias)/DARKTIME) × gain``, electron/s; frames of
    different dark times combine correctly. The gain is the store's latest measurement
    for the amp on or before the day (PTC, else flat pairs), else the nominal gain of the
    vendor (``GAIN``/``GAINSRC``).
flat (one product per physical_filter)
    ``clipped mean of (flat − master bias) × gain``, divided by one number per detector:
    the median over amps of each amp's clipped mean (``FLATNORM``). Normalised per
    detector, as cp_pipe does, and not per amp: a flat must keep the amps' relative
    response (gain × QE) to correct it, and per-amp normalisation would also make a
    response change confined to one amp invisible to verification. Each amp records its
    level in the normalised flat (``AMPMEAN``).
defects
    per-amp mask (uint8, 1 = bad) of cp_pipe-style bright defects in the dark (hot pixels
    and columns, :func:`calibmon.science.defects.find_bright_defects`) and dark defects in
    the flat (:func:`~calibmon.science.defects.find_dark_defects` on the amp's flat
    normalised by its clipped mean: the 0.9 threshold is relative to the amp).

The master bias subtracted from darks and flats is the day's own (from the day's biases
in the input) when there are biases, else the certified bias valid for the day; which one
is recorded (``BIASSRC``). Every product is written as FITS
(:mod:`calibmon.calibs.products`) and registered in the store's ``calib_products``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibmon import __version__
from calibmon.calibs import registry
from calibmon.calibs.products import AmpPlane, ProductHeader, amp_float, read_amp, write_product
from calibmon.errors import CalibError, InputError
from calibmon.io.discover import Group
from calibmon.io.geometry import AmpGeometry
from calibmon.pipeline import (
    AmpResult,
    DetectorDay,
    FileCache,
    Frame,
    read_corrected_stack,
)
from calibmon.science import bias as bias_sci
from calibmon.science import defects as defects_sci
from calibmon.science import flat as flat_sci
from calibmon.science import verify as vsci
from calibmon.science.combine import clipped_mean_stack
from calibmon.store import calibs as db
from calibmon.store.sqlite import Store, utc_now_iso

log = logging.getLogger(__name__)

# Exposure kinds each product type is built from (biases, if present, for the master bias).
KINDS_NEEDED: dict[str, tuple[str, ...]] = {
    "bias": ("bias",),
    "dark": ("bias", "dark"),
    "flat": ("bias", "flat"),
    "defects": ("bias", "dark", "flat"),
}
# Fewest frames of the product's own kind: FRMNOISE needs one pair of frames.
MIN_FRAMES = 2


def default_calib_dir(store: Store) -> Path:
    """Where products go by default: ``calibs/`` beside the store file."""
    return Path(store.path).resolve().parent / "calibs"


def _frames(group: Group) -> tuple[Frame, ...]:
    return tuple(Frame(e.path, e.exposure_id, e.exptime_s, e.darktime_s) for e in group.exposures)


def _datasec(geom: AmpGeometry) -> str:
    r, c = geom.data_rows, geom.data_cols
    return f"[{c.start + 1}:{c.stop},{r.start + 1}:{r.stop}]"


class DetectorBuild:
    """Products of one detector-day; reads one amp's stack at a time."""

    def __init__(
        self,
        instrument: str,
        day_obs: str,
        detector_name: str,
        groups: list[Group],
        store: Store,
        hints: Callable[[DetectorDay, str], tuple[float, str] | None],
        rc: Any,
        out_root: Path,
        rejected: dict[str, InputError],
    ) -> None:
        self.instrument, self.day_obs, self.name = instrument, day_obs, detector_name
        self.store, self.hints, self.rc, self.out_root = store, hints, rc, out_root
        self.rejected = rejected
        self.by_kind: dict[str, list[Group]] = {}
        for g in groups:
            self.by_kind.setdefault(g.key.kind, []).append(g)
        first = groups[0]
        self.detector, self.vendor = first.detector, first.vendor
        self.dd = DetectorDay(instrument, day_obs, detector_name, first.detector, first.vendor,
                              {k: max(v, key=lambda g: len(g.exposures))
                               for k, v in self.by_kind.items()})  # fmt: skip
        self.cache = FileCache(detector_name)
        self._bias_cert: db.CertificationRow | None = None
        self._bias_amp: tuple[str, np.ndarray, int, float] | None = None

    # -- helpers ---------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.instrument} {self.name} {self.day_obs}"

    def _read(
        self, frames: Sequence[Frame], amp: str, hook=None, kind: str = ""
    ) -> tuple[np.ndarray, list[Frame], AmpGeometry, str]:
        res = AmpResult(amp=amp)
        stack, used, geom = read_corrected_stack(frames, amp, self.name, res, hook, self.cache)
        for path, reason in res.rejected.items():
            if path not in self.rejected:
                self.rejected[path] = InputError(path, reason)
                log.warning("%s", self.rejected[path])
        if geom is None or len(used) < MIN_FRAMES:
            raise CalibError(
                f"{self._where()} {amp}: {len(used)} readable {kind} frame(s), {MIN_FRAMES} needed"
            )
        return stack, used, geom, res.detsec or ""

    def _gain(self, amp: str) -> tuple[float, str]:
        g = self.hints(self.dd, amp)
        if g is None:
            raise CalibError(
                f"{self._where()} {amp}: no gain (none measured in the store, no nominal "
                f"gain for vendor {self.vendor})"
            )
        return g

    def _bias_source(self) -> tuple[str, int]:
        """('day' or 'certified <id>', frames) of the master bias darks/flats subtract."""
        if "bias" in self.by_kind:
            return "day", 0
        row = registry.lookup(self.store, "bias", self.instrument, self.detector, self.day_obs)
        if row is None:
            raise CalibError(
                f"{self._where()}: no bias frames in the input and no certified bias valid "
                f"for {self.day_obs}: cannot subtract the bias"
            )
        self._bias_cert = row
        return f"certified {row.product.id}", int(row.product.meta.get("n_exposures", 0) or 0)

    def _master_bias(self, amp: str) -> tuple[np.ndarray, int, float]:
        """The master bias of one amp (adu), its frame count and its per-pixel noise (adu);
        the last amp's is kept for the next product step of the same amp."""
        if self._bias_amp is not None and self._bias_amp[0] == amp:
            return self._bias_amp[1:]
        if "bias" in self.by_kind:
            frames = _frames(self.dd.groups["bias"])
            stack, used, _, _ = self._read(frames, amp, kind="bias")
            master, n = clipped_mean_stack(stack), len(used)
            noise = vsci.master_noise(vsci.frame_noise_from_pairs(stack), n)
        else:
            assert self._bias_cert is not None
            plane = read_amp(self._bias_cert.product.path, amp)
            nf = amp_float(plane, "NFRAMES")
            master, n = plane.image, int(nf) if math.isfinite(nf) else 0
            noise = amp_float(plane, "MNOISE")
            if not math.isfinite(noise):  # an imported bias: assume a plain mean
                noise = vsci.master_noise(amp_float(plane, "FRMNOISE"), n, 1.0)
        self._bias_amp = (amp, master, n, noise)
        return master, n, noise

    @staticmethod
    def _check_shape(bias: np.ndarray, stack: np.ndarray, amp: str, where: str) -> None:
        if bias.shape != stack.shape[1:]:
            raise CalibError(
                f"{where} {amp}: master bias shape {bias.shape} differs from the frames "
                f"{stack.shape[1:]}"
            )

    # -- products --------------------------------------------------------------------
    def build(self, calib_type: str) -> list[db.ProductRow]:
        try:
            if calib_type == "bias":
                return [self._build_bias()]
            if calib_type == "dark":
                return [self._build_dark()]
            if calib_type == "flat":
                return [self._build_flat(g) for g in self.by_kind.get("flat", [])] or self._none(
                    "flat"
                )
            return [self._build_defects()]
        finally:
            self.cache.close()

    def _none(self, kind: str) -> list[db.ProductRow]:
        raise CalibError(f"{self._where()}: no {kind} frames in the input")

    def _build_bias(self) -> db.ProductRow:
        if "bias" not in self.by_kind:
            self._none("bias")
        frames = _frames(self.dd.groups["bias"])
        planes: dict[str, AmpPlane] = {}
        used_ids: set[int] = set()
        for amp in self.dd.amps:
            noises: list[bias_sci.FrameNoise] = []

            def hook(image, geom, levels, noises=noises):
                overscan = image[geom.data_rows, geom.overscan_level_cols]
                noises.append(bias_sci.overscan_frame_noise_rows(overscan, levels))

            stack, used, geom, detsec = self._read(frames, amp, hook, "bias")
            master = clipped_mean_stack(stack)
            frame_noise = vsci.frame_noise_from_pairs(stack)
            factor = vsci.master_noise_factor(len(used))
            planes[amp] = AmpPlane(master, _datasec(geom), detsec, {
                "NFRAMES": len(used),
                "RDNOISE": bias_sci.read_noise_adu(noises),
                "FRMNOISE": frame_noise,
                "NOISEFAC": factor,
                "MNOISE": vsci.master_noise(frame_noise, len(used), factor),
            })  # fmt: skip
            used_ids.update(f.exposure_id for f in used)
            del stack
        return self._write("bias", planes, sorted(used_ids), ["bias"] * len(used_ids))

    def _dark_rate(
        self, amp: str, frames: Sequence[Frame]
    ) -> tuple[np.ndarray, list[Frame], AmpGeometry, str, dict[str, Any]]:
        """Dark current image of one amp (electron/s) and its per-amp keys."""
        bias, n_bias, bias_noise_adu = self._master_bias(amp)
        stack, used, geom, detsec = self._read(frames, amp, kind="dark")
        self._check_shape(bias, stack, amp, self._where())
        stack -= bias[None]
        gain, source = self._gain(amp)
        frame_noise_adu = vsci.frame_noise_from_pairs(stack)
        for k, f in enumerate(used):
            stack[k] /= np.float32(f.darktime_s)
        rate = clipped_mean_stack(stack)
        del stack
        rate *= np.float32(gain)
        dark_mean, _, _ = vsci.residual_stats(rate)
        darktime = float(np.mean([f.darktime_s for f in used]))
        factor = vsci.master_noise_factor(len(used))
        keys = {
            "NFRAMES": len(used), "GAIN": gain, "GAINSRC": source[:60],
            "FRMNOISE": frame_noise_adu * gain, "DARKTIME": darktime,
            "DARKMEAN": dark_mean, "NBIAS": n_bias, "NOISEFAC": factor,
            "MNOISE": vsci.dark_master_noise_e_per_s(
                frame_noise_adu * gain, len(used), darktime, bias_noise_adu * gain, factor
            ),
        }  # fmt: skip
        return rate, used, geom, detsec, keys

    def _build_dark(self) -> db.ProductRow:
        if "dark" not in self.by_kind:
            self._none("dark")
        source, _ = self._bias_source()
        frames = _frames(self.dd.groups["dark"])
        planes: dict[str, AmpPlane] = {}
        used_ids: set[int] = set()
        for amp in self.dd.amps:
            rate, used, geom, detsec, keys = self._dark_rate(amp, frames)
            planes[amp] = AmpPlane(rate, _datasec(geom), detsec, keys)
            used_ids.update(f.exposure_id for f in used)
        return self._write("dark", planes, sorted(used_ids), ["dark"] * len(used_ids),
                           extra={"BIASSRC": source})  # fmt: skip

    def _flat_amp(
        self, amp: str, frames: Sequence[Frame]
    ) -> tuple[np.ndarray, list[Frame], AmpGeometry, str, dict[str, Any]]:
        """Combined flat of one amp in electrons (not normalised) and its per-amp keys."""
        bias, _, bias_noise_adu = self._master_bias(amp)
        noises: list[bias_sci.FrameNoise] = []

        def hook(image, geom, levels):
            overscan = image[geom.data_rows, geom.overscan_level_cols]
            noises.append(bias_sci.overscan_frame_noise_rows(overscan, levels))

        stack, used, geom, detsec = self._read(frames, amp, hook, "flat")
        self._check_shape(bias, stack, amp, self._where())
        stack -= bias[None]
        gain, source = self._gain(amp)
        pair_vars = []
        for i in range(0, len(used) - 1, 2):
            a, b = used[i], used[i + 1]
            if math.isclose(a.exptime_s, b.exptime_s, rel_tol=1e-3, abs_tol=1e-3):
                ps = flat_sci.pair_statistics(stack[i], stack[i + 1])
                if math.isfinite(ps.var_adu2):
                    pair_vars.append(ps.var_adu2)
        master = clipped_mean_stack(stack)
        del stack
        master *= np.float32(gain)
        signal = flat_sci.flat_level(master)
        pair_var = float(np.mean(pair_vars)) * gain * gain if pair_vars else math.nan
        factor = vsci.master_noise_factor(len(used))
        # the master's relative per-pixel noise: its frames' (F·v/N) and the master bias's
        master_var = pair_var * factor / len(used) + (bias_noise_adu * gain) ** 2
        keys = {
            "NFRAMES": len(used), "GAIN": gain, "GAINSRC": source[:60], "SIGNAL": signal,
            "PAIRVAR": pair_var, "RDNOISE": bias_sci.read_noise_adu(noises) * gain,
            "NOISEFAC": factor, "MNOISE": math.sqrt(master_var) / signal if signal > 0 else math.nan,
        }  # fmt: skip
        return master, used, geom, detsec, keys

    def _build_flat(self, group: Group) -> db.ProductRow:
        source, _ = self._bias_source()
        frames = _frames(group)
        raw: dict[str, tuple[np.ndarray, str, str, dict[str, Any]]] = {}
        used_ids: set[int] = set()
        for amp in self.dd.amps:
            master, used, geom, detsec, keys = self._flat_amp(amp, frames)
            raw[amp] = (master, _datasec(geom), detsec, keys)
            used_ids.update(f.exposure_id for f in used)
        signals = [k["SIGNAL"] for _, _, _, k in raw.values()
                   if math.isfinite(k["SIGNAL"]) and k["SIGNAL"] > 0]  # fmt: skip
        if not signals:
            raise CalibError(f"{self._where()}: flat {group.key.physical_filter!r} has no signal")
        norm = float(np.median(signals))
        planes: dict[str, AmpPlane] = {}
        for amp, (master, datasec, detsec, keys) in raw.items():
            master /= np.float32(norm)
            keys["AMPMEAN"] = keys["SIGNAL"] / norm
            planes[amp] = AmpPlane(master, datasec, detsec, keys)
        return self._write(
            "flat", planes, sorted(used_ids), ["flat"] * len(used_ids),
            physical_filter=group.key.physical_filter,
            extra={"BIASSRC": source, "FLATNORM": norm, "NORMTYPE": "DETECTOR"},
        )  # fmt: skip

    def _build_defects(self) -> db.ProductRow:
        has_dark, has_flat = "dark" in self.by_kind, "flat" in self.by_kind
        if not (has_dark or has_flat):
            self._none("dark or flat")
        source, _ = self._bias_source()
        planes: dict[str, AmpPlane] = {}
        ids: dict[int, str] = {}
        for amp in self.dd.amps:
            mask = None
            keys: dict[str, Any] = {"NFRAMES": 0}
            datasec = detsec = ""
            if has_dark:
                rate, used, geom, detsec, _ = self._dark_rate(amp, _frames(self.dd.groups["dark"]))
                bright = defects_sci.find_bright_defects(rate)
                del rate
                mask = bright.pixel_mask.copy()
                datasec = _datasec(geom)
                keys.update(NBRIGHT=bright.n_pixels, BRCOLS=bright.n_columns)
                keys["NFRAMES"] += len(used)
                ids.update({f.exposure_id: "dark" for f in used})
            if has_flat:
                master, used, geom, detsec_f, _ = self._flat_amp(
                    amp, _frames(self.dd.groups["flat"])
                )
                level = flat_sci.flat_level(master)
                norm = master / np.float32(level) if math.isfinite(level) and level > 0 else master
                cold = defects_sci.find_dark_defects(norm)
                mask = cold.pixel_mask.copy() if mask is None else (mask | cold.pixel_mask)
                datasec, detsec = datasec or _datasec(geom), detsec or detsec_f
                keys.update(NDARK=cold.n_pixels, DKCOLS=cold.n_columns)
                keys["NFRAMES"] += len(used)
                ids.update({f.exposure_id: "flat" for f in used})
            assert mask is not None
            keys["NBAD"] = int(np.count_nonzero(mask))
            planes[amp] = AmpPlane(mask.astype(np.uint8), datasec, detsec, keys)
        src = "+".join(k for k, on in (("dark", has_dark), ("flat", has_flat)) if on)
        if src != "dark+flat":
            log.warning("%s: defects from the %s only", self._where(), src)
        order = sorted(ids)
        return self._write("defects", planes, order, [ids[i] for i in order],
                           extra={"BIASSRC": source, "DEFSRC": src})  # fmt: skip

    # -- output ----------------------------------------------------------------------
    def _write(
        self,
        calib_type: str,
        planes: dict[str, AmpPlane],
        exposures: list[int],
        kinds: list[str],
        physical_filter: str = "",
        extra: dict[str, Any] | None = None,
    ) -> db.ProductRow:
        pid = str(uuid.uuid4())
        header = ProductHeader(
            calib_type=calib_type, calib_id=pid, instrument=self.instrument,
            detector=self.detector, detector_name=self.name, vendor=self.vendor,
            day_obs=self.day_obs, physical_filter=physical_filter,
            software_version=__version__, config_hash=self.rc.config_hash,
            source_run=self.rc.run_id, exposures=exposures, exposure_kinds=kinds,
            extra=dict(extra or {}),
        )  # fmt: skip
        filt = f"_{physical_filter}" if physical_filter else ""
        path = (self.out_root / calib_type / self.day_obs /
                f"{self.instrument}_{calib_type}_{self.name}{filt}_{self.day_obs}_{pid[:8]}.fits")  # fmt: skip
        write_product(path, header, planes)
        shape = next(iter(planes.values())).image.shape
        row = db.ProductRow(
            id=pid, calib_type=calib_type, instrument=self.instrument, detector=self.detector,
            detector_name=self.name, physical_filter=physical_filter, day_obs=self.day_obs,
            path=str(path.resolve()), source_run=self.rc.run_id, created_at=utc_now_iso(),
            meta={
                "vendor": self.vendor, "n_exposures": len(exposures), "exposures": exposures,
                "software_version": __version__, "config_hash": self.rc.config_hash,
                "amp_shape": list(shape), **{k.lower(): v for k, v in (extra or {}).items()},
            },
        )  # fmt: skip
        db.insert_product(self.store, row)
        log.info("built %s %s for %s: %s (%d exposures)", calib_type, pid, self._where(), path,
                 len(exposures))  # fmt: skip
        return row
