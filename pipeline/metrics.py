"""Temporal stability of a stylized clip: the warping error E_warp of Lai et al. 2018.

For each consecutive pair (t, t+1) the flow is computed on the SOURCE frames, never on the
stylized ones (a flickering output must not get to explain its own flicker away):

    w_t  = optical_flow(S_t, S_{t+1})         S_t(x) ≈ S_{t+1}(x + w_t(x)), brings t+1 onto t
    M_t  = reliability(w_t, optical_flow(S_{t+1}, S_t))      0 where occluded / out of frame
    E(t) = Σ_x M_t(x) · mean_c (warp(O_{t+1}, w_t)(x, c) − O_t(x, c))²  /  Σ_x M_t(x)

with O in RGB [0, 1].  The squared difference is averaged over the three channels, as in Lai's
reference code (its mask is read back as a 3-channel image, so its N counts pixels × 3): values
are comparable to the literature (~1e-3 … 1e-2).  A pair whose mask is empty (a scene cut) has
no defined error: it is NaN and left out of the mean, where the reference would report 0.

The "flow floor" clip carries the first stylized frame along the source's flow with no
optimization; its E_warp is the least a textured output can show (see DESIGN.md §2).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.flow import canonical_method, optical_flow, reliability, warp
from pipeline.images import load_rgb
from pipeline.video import probe, read_frames

_SEQUENCE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_PRINTF_NUMBER = re.compile(r"%0?(\d*)d")


@dataclass(frozen=True)
class WarpingError:
    """E_warp of a clip: one value per consecutive pair, and their mean (NaN pairs excluded)."""

    per_pair: tuple[float, ...]  # E(t) for pairs (0,1), (1,2), ...; NaN where the mask is empty
    coverage: tuple[float, ...]  # share of pixels the occlusion mask kept, per pair

    @property
    def mean(self) -> float:
        defined = [value for value in self.per_pair if not math.isnan(value)]
        return float(np.mean(defined)) if defined else math.nan

    @property
    def frames(self) -> int:
        return len(self.per_pair) + 1


@dataclass(frozen=True)
class PairMotion:
    """Source motion between frames t and t+1, at the resolution the error is measured at."""

    flow: np.ndarray  # t → t+1: warp(frame t+1, flow) is aligned with frame t
    reverse_flow: np.ndarray  # t+1 → t: warp(frame t, reverse_flow) is aligned with frame t+1
    mask: np.ndarray  # reliability of `flow`: 1 where frame t's pixel is visible in t+1


# ---------------------------------------------------------------- public API


def warping_error(
    source_frames: Iterable[np.ndarray],
    stylized_frames: Iterable[np.ndarray],
    method: str = "dis-medium",
) -> WarpingError:
    """E_warp of `stylized_frames`, with flow and occlusion mask taken from `source_frames`.

    Both are RGB uint8 HxWx3; the source is resized to the stylized size so the flow is
    measured at the output resolution. Frames are consumed one pair at a time (streams are fine).
    """
    stylized = iter(stylized_frames)
    first = _first_frame(stylized, "stylized")
    motions = source_motions(source_frames, _size_of(first), method)
    return _errors_along(motions, _chained(first, stylized))


def flow_floor(
    source_frames: Iterable[np.ndarray], first_stylized: np.ndarray, method: str = "dis-medium"
) -> list[np.ndarray]:
    """The first stylized frame carried along the source flow, unoptimized (uint8 RGB frames).

    Frame t+1 = warp(frame t, flow of source t+1 → t). It is carried in float so that rounding
    does not accumulate; newly entering areas repeat the border (warp's BORDER_REPLICATE).
    """
    motions = source_motions(source_frames, _size_of(first_stylized), method)
    return [_to_uint8(frame) for frame in _carried_along(_to_unit(first_stylized), motions)]


def evaluate_clip(
    source_path: str | os.PathLike,
    stylized_path: str | os.PathLike,
    method: str = "dis-medium",
    source_start: int = 0,
) -> dict:
    """E_warp of a stylized clip next to the source's own and the flow floor's (JSON-ready).

    `stylized_path` is a video, a directory of image frames (sorted by name) or a printf pattern
    such as ``out/frame.%04d.png``. Its frame i shows source frame ``source_start + i``; the
    source is decoded at the stylized size. Flow is computed once per pair for all three clips.
    """
    method = canonical_method(method)  # fail before decoding anything, report the real name
    count, stylized = _open_stylized(stylized_path)
    first = _first_frame(stylized, str(stylized_path))
    source_info = probe(source_path)
    if source_start + count > source_info.frame_count:
        raise InputError(
            f"{stylized_path}: {count} stylized frames from source frame {source_start} run past "
            f"the source's end ({source_info.frame_count} frames)"
        )
    source = read_frames(source_info, source_start, source_start + count, _size_of(first))
    clips = clip_errors(source, _chained(first, stylized), method)
    return _report(clips, _size_of(first), method)


def source_motions(
    source_frames: Iterable[np.ndarray], size: tuple[int, int], method: str = "dis-medium"
) -> Iterator[tuple[np.ndarray, np.ndarray, PairMotion]]:
    """(source t, source t+1, motion t → t+1) for each consecutive pair, at size=(width, height)."""
    frames = (_resized(frame, size) for frame in source_frames)
    previous = _first_frame(frames, "source")
    for current in frames:
        flow = optical_flow(previous, current, method)
        reverse_flow = optical_flow(current, previous, method)
        yield previous, current, PairMotion(flow, reverse_flow, reliability(flow, reverse_flow))
        previous = current


def pair_warping_error(current: np.ndarray, following: np.ndarray, motion: PairMotion) -> float:
    """E(t) of one pair: `following` (frame t+1) warped onto `current` (frame t), masked.

    NaN where the mask keeps no pixel: there is nothing to compare.
    """
    weight = float(motion.mask.sum())
    if weight == 0.0:
        return math.nan
    aligned = warp(_to_unit(following), motion.flow)
    squared = np.square(aligned - _to_unit(current)).mean(axis=2)  # mean over RGB, see module doc
    return float((motion.mask * squared).sum() / weight)


# ---------------------------------------------------------------- one pass, three clips


@dataclass(frozen=True)
class ClipErrors:
    """Per-pair errors of a stylized clip, its source and its flow floor, pair for pair."""

    stylized: WarpingError
    source: WarpingError
    floor: WarpingError


def clip_errors(
    source: Iterable[np.ndarray], stylized: Iterator[np.ndarray], method: str
) -> ClipErrors:
    """Stylized, source and flow-floor errors from one flow computation per pair."""
    first = next(stylized)
    values: dict[str, list[float]] = {"stylized": [], "source": [], "floor": []}
    coverage: list[float] = []
    stylized_previous, floor_previous = first, _to_unit(first)
    for source_t, source_next, motion in source_motions(source, _size_of(first), method):
        stylized_next = _next_frame(stylized, len(coverage) + 1)
        floor_next = warp(floor_previous, motion.reverse_flow)
        values["stylized"].append(pair_warping_error(stylized_previous, stylized_next, motion))
        values["source"].append(pair_warping_error(source_t, source_next, motion))
        values["floor"].append(pair_warping_error(floor_previous, floor_next, motion))
        coverage.append(_coverage(motion))
        stylized_previous, floor_previous = stylized_next, floor_next
    return ClipErrors(**{name: WarpingError(tuple(v), tuple(coverage)) for name, v in values.items()})


def _report(clips: ClipErrors, size: tuple[int, int], method: str) -> dict:
    return {
        "frames": clips.stylized.frames,
        "size": list(size),
        "method": method,
        "stylized": clips.stylized.mean,
        "source": clips.source.mean,
        "flow_floor": clips.floor.mean,
        "ratio_to_source": _ratio(clips.stylized.mean, clips.source.mean),
        "ratio_to_floor": _ratio(clips.stylized.mean, clips.floor.mean),
        "per_pair": list(clips.stylized.per_pair),
        "coverage": list(clips.stylized.coverage),
    }


def _ratio(numerator: float, denominator: float) -> float:
    # A perfectly still source has E_warp 0: report inf (or NaN for 0/0) rather than crash.
    if denominator == 0.0:
        return math.nan if numerator == 0.0 else math.inf
    return numerator / denominator


# ---------------------------------------------------------------- helpers


def _errors_along(
    motions: Iterator[tuple[np.ndarray, np.ndarray, PairMotion]], stylized: Iterator[np.ndarray]
) -> WarpingError:
    previous = next(stylized)
    values, coverage = [], []
    for _, _, motion in motions:
        following = _next_frame(stylized, len(values) + 1)
        values.append(pair_warping_error(previous, following, motion))
        coverage.append(_coverage(motion))
        previous = following
    _require_exhausted(stylized, len(values) + 1)
    return WarpingError(tuple(values), tuple(coverage))


def _carried_along(
    first: np.ndarray, motions: Iterator[tuple[np.ndarray, np.ndarray, PairMotion]]
) -> Iterator[np.ndarray]:
    frame = first
    yield frame
    for _, _, motion in motions:
        frame = warp(frame, motion.reverse_flow)
        yield frame


def _coverage(motion: PairMotion) -> float:
    return float(motion.mask.mean())


def _to_unit(frame: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; float input is taken as already in [0, 1] (the floor is carried so)."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    return frame.astype(np.float32, copy=False)


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)


def _size_of(frame: np.ndarray) -> tuple[int, int]:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB HxWx3 frame, got shape {frame.shape}")
    return frame.shape[1], frame.shape[0]


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Source frame at the output size: INTER_AREA when shrinking (no aliasing for the flow)."""
    height, width = frame.shape[:2]
    if (width, height) == tuple(size):
        return frame
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _first_frame(frames: Iterator[np.ndarray], what: str) -> np.ndarray:
    try:
        return next(frames)
    except StopIteration:
        raise ValueError(f"{what}: no frames") from None


def _next_frame(frames: Iterator[np.ndarray], index: int) -> np.ndarray:
    try:
        return next(frames)
    except StopIteration:
        raise ValueError(f"stylized clip has fewer frames than the source (only {index})") from None


def _require_exhausted(frames: Iterator[np.ndarray], count: int) -> None:
    if next(frames, None) is not None:
        raise ValueError(f"stylized clip has more frames than the source's {count}")


def _chained(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# ---------------------------------------------------------------- stylized input


def _open_stylized(path: str | os.PathLike) -> tuple[int, Iterator[np.ndarray]]:
    """Frame count and RGB uint8 frames (own size) of a video, image directory or printf pattern."""
    files = _sequence_files(path)
    if files is not None:
        count, frames = len(files), (load_rgb(file) for file in files)
    else:
        info = probe(path)
        count, frames = info.frame_count, read_frames(info, 0, info.frame_count, (info.width, info.height))
    if count < 2:
        raise InputError(f"{path}: E_warp needs at least 2 frames, got {count}")
    return count, frames


def _sequence_files(path: str | os.PathLike) -> list[Path] | None:
    """The frames of an image sequence in order, or None if `path` is not one."""
    text = str(path)
    if _PRINTF_NUMBER.search(Path(text).name) and not Path(text).is_file():
        return _pattern_files(Path(text))
    if Path(text).is_dir():
        files = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in _SEQUENCE_SUFFIXES)
        if not files:
            raise InputError(f"{path}: directory holds no image frames ({', '.join(_SEQUENCE_SUFFIXES)})")
        return files
    return None


def _pattern_files(pattern: Path) -> list[Path]:
    """Files matching e.g. ``frame.%04d.png``, ordered by number (gaps are an error)."""
    head, tail = _PRINTF_NUMBER.split(pattern.name, maxsplit=1)[0::2]
    number = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
    directory = pattern.parent if str(pattern.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{directory}: directory of the frame pattern does not exist")
    numbered = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := number.match(p.name)))
    if not numbered:
        raise InputError(f"{pattern}: no frames match the pattern")
    numbers = [n for n, _ in numbered]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise InputError(f"{pattern}: frame numbers are not consecutive ({numbers[0]}…{numbers[-1]}, {len(numbers)} files)")
    return [p for _, p in numbered]


__all__ = [
    "PairMotion",
    "WarpingError",
    "evaluate_clip",
    "flow_floor",
    "pair_warping_error",
    "source_motions",
    "warping_error",
]
