"""Reading one amp's frames: open files once per task, overscan-correct and trim each
frame straight into one float32 stack (:func:`read_corrected_stack`).

:func:`correct_frame_into` is the per-frame part, shared with callers that hold raw amp
images in memory (tests, simulations): a raw amp image (adu) and its geometry in, the
trimmed overscan-corrected frame (adu) written into the stack's slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from calibmon.errors import InputError
from calibmon.io.fits import RawFile
from calibmon.io.geometry import AmpGeometry
from calibmon.pipeline.tasks import AmpResult, Frame
from calibmon.science.isr import overscan_correct_into


class FileCache:
    """Open raw files for the duration of a task; a file that fails stays failed."""

    def __init__(self, detector_name: str) -> None:
        self.detector_name = detector_name
        self._open: dict[str, RawFile] = {}
        self._failed: dict[str, InputError] = {}
        self._buffers: dict[str, np.ndarray] = {}
        # decoded raw amp images, one array per (dtype, shape), reused by every read:
        # an image is valid until the next read_amp (RawFile.read_amp)
        self.raw_buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def get(self, path: str) -> RawFile:
        if path in self._failed:
            raise self._failed[path]
        raw = self._open.get(path)
        if raw is None:
            try:
                raw = RawFile(path)
                try:
                    raw.check_segments(self.detector_name)
                except InputError:
                    raw.close()
                    raise
            except InputError as err:
                self._failed[path] = err
                raise
            self._open[path] = raw
        return raw

    def buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` reused across the task's amps (one per ``key``).

        Fresh 60 MB stacks per amp and kind cost a page fault per 4 kB on first touch
        (measured: 10 ms of a 14 ms overscan correction of a full-size frame); reusing one
        buffer per kind keeps the memory mapped. Contents are garbage until written."""
        need = int(np.prod(shape))
        buf = self._buffers.get(key)
        if buf is None or buf.size < need:
            buf = np.empty(need, dtype=np.float32)
            self._buffers[key] = buf
        return buf[:need].reshape(shape)

    def close(self) -> None:
        for raw in self._open.values():
            raw.close()
        self._open.clear()
        self._buffers.clear()
        self.raw_buffers.clear()


FrameHook = Callable[[np.ndarray, AmpGeometry, np.ndarray], None]


def correct_frame_into(
    image: np.ndarray, geom: AmpGeometry, out: np.ndarray, hook: FrameHook | None = None
) -> np.ndarray:
    """Overscan-correct and trim one raw amp ``image`` (adu) into ``out`` ((rows, cols)
    float32, adu); ``hook(image, geom, row_levels)`` then sees the raw frame. Returns the
    per-row overscan levels subtracted (adu)."""
    levels = overscan_correct_into(
        image, geom.data_rows, geom.data_cols, geom.overscan_level_cols, out
    )
    if hook is not None:
        hook(image, geom, levels)
    return levels


def corrected_stack(
    images: Sequence[np.ndarray], geom: AmpGeometry, hook: FrameHook | None = None
) -> np.ndarray:
    """(n, rows, cols) float32 stack of raw amp ``images`` held in memory (adu), each
    overscan corrected and trimmed as :func:`read_corrected_stack` does with files."""
    stack = np.empty((len(images), geom.n_data_rows, geom.n_data_cols), np.float32)
    for k, image in enumerate(images):
        correct_frame_into(image, geom, stack[k], hook)
    return stack


def read_corrected_stack(
    frames: Sequence[Frame],
    amp: str,
    detector_name: str,
    result: AmpResult,
    hook: FrameHook | None = None,
    cache: FileCache | None = None,
    buffer_key: str | None = None,
) -> tuple[np.ndarray, list[Frame], AmpGeometry | None]:
    """Overscan-correct and trim ``amp`` of each frame into one (n, rows, cols) float32 stack.

    Files that cannot be read are recorded in ``result.rejected`` and left out.
    ``hook(raw_image, geometry, row_levels)`` sees each raw frame (e.g. for overscan noise).
    """
    stack: np.ndarray | None = None
    used: list[Frame] = []
    geom0: AmpGeometry | None = None
    own_cache = cache is None
    cache = cache or FileCache(detector_name)
    for fr in frames:
        try:
            raw = cache.get(fr.path)
            image, geom = raw.read_amp(amp, cache.raw_buffers)
        except InputError as err:
            result.rejected[err.path] = err.reason
            continue
        if geom0 is None:
            geom0 = geom
            if result.detsec is None:
                result.detsec = str(raw.amp_header(amp).get("DETSEC", "") or "") or None
        elif geom != geom0:
            result.rejected[fr.path] = (
                f"Segment{amp[1:]}: geometry {geom.shape} DATASEC differs from the other frames"
            )
            continue
        if stack is None:
            shape = (len(frames), geom.n_data_rows, geom.n_data_cols)
            stack = cache.buffer(buffer_key, shape) if buffer_key else np.empty(shape, np.float32)
        # overscan-correct and trim straight into the stack (no temporary frame)
        correct_frame_into(image, geom, stack[len(used)], hook)
        used.append(fr)
    if own_cache:
        cache.close()
    if stack is None:
        return np.empty((0, 0, 0), dtype=np.float32), used, None
    return stack[: len(used)], used, geom0
