"""How good a stylized clip is: temporal stability (E_warp, Lai et al. 2018, with its flow
floor) and content fidelity (structure), measured in one pass over source and stylized frames.

E_warp. For each consecutive pair (t, t+1) the flow is computed on the SOURCE frames, never on
the stylized ones (a flickering output must not get to explain its own flicker away):

    w_t  = optical_flow(S_t, S_{t+1})         S_t(x) ≈ S_{t+1}(x + w_t(x)), brings t+1 onto t
    M_t  = reliability(w_t, optical_flow(S_{t+1}, S_t))      0 where occluded / out of frame
    E(t) = Σ_x M_t(x) · mean_c (warp(O_{t+1}, w_t)(x, c) − O_t(x, c))²  /  Σ_x M_t(x)

with O in RGB [0, 1].  The squared difference is averaged over the three channels, as in Lai's
reference code (its mask is read back as a 3-channel image, so its N counts pixels × 3): values
are comparable to the literature (~1e-3 … 1e-2).  A pair whose mask is empty (a scene cut) has
no defined error: it is NaN and left out of the mean, where the reference would report 0.

The estimator (the flow behind w_t and M_t) defaults to DeepFlow, which shares nothing with the
DIS flow a render warm-starts and builds its temporal loss from: measured with the render's own
flow on the same frames, the optimizer has fitted the instrument and the figure flatters.

Flow floor, per pair: stylized frame t carried one step along the render's flow (source t+1 → t),
measured against frame t with the estimator's flow and mask: what a warm start alone would show,
blurred once by bilinear resampling and judged by a flow that disagrees a little with the render's.
About the least flicker a textured output shows; an output below it has usually lost texture
(a chain that blurs frame after frame flickers less), so read it with the texture energy.
It is per pair on purpose: carrying one frame through the whole clip blurs it a little more at
every step, so such a floor sinks with clip length and every real output looks far above it.
E_warp ÷ floor is a ratio of means (mean E(t) ÷ mean floor(t)): a nearly still pair has a floor
near 0 and would dominate a mean of per-pair ratios.

Structure, per frame: the Pearson correlation between the gradient magnitudes (Sobel on grey
after a Gaussian blur of sigma 2 px) of the source frame and the stylized frame at output size;
1 = the same edges, ~0 = unrelated. A low E_warp is worthless when the output has lost the
content (the same painting on every frame is perfectly stable), so the two go together.
Drift = mean structure of the last quarter of the frames ÷ that of the first quarter.
Texture energy, per frame: the variance of the Laplacian of the grey stylized frame (grey in
[0, 1]); it falls where frames are blurred or washed out, e.g. ghosts at chunk seams.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from pipeline.config import read_preset
from pipeline.errors import InputError
from pipeline.flow import canonical_method, optical_flow, reliability, warp
from pipeline import images
from pipeline.sequences import SUFFIXES, load_srgb8
from pipeline.outputs import PRINTF_NUMBER, is_sequence_pattern
from pipeline.video import probe, read_frames

EVALUATION_FLOW = "deepflow"  # independent of every flow a render can use; "farneback" is the fast alternative
STRUCTURE_BLUR_SIGMA = 2.0  # px: edges of the content, not of the brush strokes
_SEQUENCE_SUFFIXES = SUFFIXES  # EXR as linear light, converted to sRGB like a render input


def default_render_flow() -> str:
    """The flow a render uses unless told otherwise: what the floor is carried along by default."""
    return read_preset("default")["flow"]


@dataclass(frozen=True)
class WarpingError:
    """E_warp of a clip: one value per consecutive pair, and their mean (NaN pairs excluded)."""

    per_pair: tuple[float, ...]  # E(t) for pairs (0,1), (1,2), ...; NaN where the mask is empty
    coverage: tuple[float, ...]  # share of pixels the occlusion mask kept, per pair

    @property
    def mean(self) -> float:
        return defined_mean(self.per_pair)

    @property
    def frames(self) -> int:
        return len(self.per_pair) + 1


@dataclass(frozen=True)
class PairMotion:
    """Source motion between frames t and t+1, at the resolution the error is measured at."""

    flow: np.ndarray  # t → t+1: warp(frame t+1, flow) is aligned with frame t
    reverse_flow: np.ndarray  # t+1 → t: warp(frame t, reverse_flow) is aligned with frame t+1
    mask: np.ndarray  # reliability of `flow`: 1 where frame t's pixel is visible in t+1


@dataclass(frozen=True)
class ClipMeasures:
    """Everything measured on one clip: per pair (t, t+1) and per frame, with the flows used."""

    estimator: str  # the evaluation's flow: E_warp's warp and mask
    carry_flow: str  # the render's flow, that carried each frame one step for the floor
    stylized: WarpingError
    source: WarpingError  # the source's own E_warp: context, not a target
    floor: WarpingError  # per-pair flow floor
    structure: tuple[float, ...]  # per frame
    texture: tuple[float, ...]  # per frame, of the stylized frame

    @property
    def ratio_to_floor(self) -> float:
        """Mean E_warp ÷ mean per-pair floor (a ratio of means)."""
        return ratio(self.stylized.mean, self.floor.mean)

    @property
    def structure_mean(self) -> float:
        return defined_mean(self.structure)

    @property
    def structure_drift(self) -> float:
        return drift(self.structure)


# ---------------------------------------------------------------- public API


def measure_clip(
    source_frames: Iterable[np.ndarray],
    stylized_frames: Iterable[np.ndarray],
    estimator: str = EVALUATION_FLOW,
    carry_flow: str | None = None,
) -> ClipMeasures:
    """E_warp, source E_warp, per-pair floor, structure and texture of a clip, in one pass.

    Both clips are RGB uint8 HxWx3 and as long as each other; the source is resized to the
    stylized size, so flow and structure are measured at the output resolution. Frames are
    consumed one pair at a time (streams are fine). `carry_flow` is the render's flow method
    (default: the default preset's).
    """
    estimator = canonical_method(estimator, for_evaluation=True)
    carry_flow = canonical_method(carry_flow or default_render_flow())
    stylized = iter(stylized_frames)
    stylized_t = _first_frame(stylized, "stylized")
    sources = (images.resized(frame, _size_of(stylized_t)) for frame in source_frames)
    source_t = _first_frame(sources, "source")
    per_frame = [_frame_values(source_t, stylized_t)]
    per_pair: list[tuple[float, float, float, float]] = []
    for source_next in sources:
        stylized_next = _next_frame(stylized, len(per_frame))
        motion = pair_motion(source_t, source_next, estimator)
        per_pair.append((
            pair_warping_error(stylized_t, stylized_next, motion),
            pair_warping_error(source_t, source_next, motion),
            pair_floor(source_t, source_next, stylized_t, motion, carry_flow),
            _coverage(motion),
        ))
        per_frame.append(_frame_values(source_next, stylized_next))
        source_t, stylized_t = source_next, stylized_next
    _require_exhausted(stylized, len(per_frame))
    return _clip_measures(estimator, carry_flow, per_pair, per_frame)


def warping_error(
    source_frames: Iterable[np.ndarray], stylized_frames: Iterable[np.ndarray], estimator: str = EVALUATION_FLOW
) -> WarpingError:
    """E_warp of `stylized_frames`, with flow and occlusion mask taken from `source_frames`."""
    return measure_clip(source_frames, stylized_frames, estimator).stylized


def pair_motion(current: np.ndarray, following: np.ndarray, estimator: str = EVALUATION_FLOW) -> PairMotion:
    """Flow both ways between source frames t and t+1 (same size), and the occlusion mask."""
    flow = optical_flow(current, following, estimator)
    reverse_flow = optical_flow(following, current, estimator)
    return PairMotion(flow, reverse_flow, reliability(flow, reverse_flow))


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


def pair_floor(
    source_t: np.ndarray, source_next: np.ndarray, stylized_t: np.ndarray, motion: PairMotion, carry_flow: str
) -> float:
    """The floor of pair (t, t+1): stylized t carried to t+1 along the render's flow, as a render's
    warm start would place it, then measured like a real pair (the estimator's flow and mask)."""
    carried = warp(_to_unit(stylized_t), optical_flow(source_next, source_t, carry_flow))
    return pair_warping_error(stylized_t, carried, motion)


def structure(source: np.ndarray, stylized: np.ndarray) -> float:
    """Pearson correlation of the two frames' gradient magnitudes, at the stylized frame's size.

    NaN when either frame has no gradient at all (a flat frame correlates with nothing).
    """
    return _pearson(gradient_magnitude(images.resized(source, _size_of(stylized))), gradient_magnitude(stylized))


def gradient_magnitude(rgb: np.ndarray) -> np.ndarray:
    """|Sobel| of the grey frame (in [0, 1]) after a Gaussian blur of STRUCTURE_BLUR_SIGMA px."""
    blurred = cv2.GaussianBlur(_grey(rgb), (0, 0), STRUCTURE_BLUR_SIGMA)
    return np.hypot(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))


def texture_energy(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey frame (in [0, 1]): how much fine detail it holds."""
    return float(cv2.Laplacian(_grey(rgb), cv2.CV_32F).var())


def drift(per_frame: Sequence[float]) -> float:
    """Mean of the last quarter ÷ mean of the first quarter (one frame each when fewer than 8)."""
    if len(per_frame) < 2:
        return math.nan
    quarter = max(1, len(per_frame) // 4)
    return ratio(defined_mean(per_frame[-quarter:]), defined_mean(per_frame[:quarter]))


def defined_mean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN (NaN: a pair across a cut, a flat frame); NaN if none."""
    defined = [value for value in values if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def ratio(numerator: float, denominator: float) -> float:
    # A perfectly still source has E_warp 0: report inf (or NaN for 0/0) rather than crash.
    if denominator == 0.0:
        return math.nan if numerator == 0.0 else math.inf
    return numerator / denominator


def evaluate_clip(
    source_path: str | os.PathLike,
    stylized_path: str | os.PathLike,
    estimator: str = EVALUATION_FLOW,
    source_start: int = 0,
    carry_flow: str | None = None,
) -> dict:
    """measure_clip of files, as a JSON-ready dict (means, ratios and the per-pair/per-frame lists).

    `stylized_path` is a video, a directory of image frames (sorted by name) or a printf pattern
    such as ``out/frame.%04d.png``. Its frame i shows source frame ``source_start + i``; the
    source is decoded at the stylized size.
    """
    estimator = canonical_method(estimator, for_evaluation=True)  # fail before decoding anything
    count, stylized = _open_stylized(stylized_path)
    first = _first_frame(stylized, str(stylized_path))
    source = read_source(source_path, source_start, count, _size_of(first), stylized_path)
    measures = measure_clip(source, _chained(first, stylized), estimator, carry_flow)
    return report_dict(measures, _size_of(first))


def read_source(
    source_path: str | os.PathLike, start: int, count: int, size: tuple[int, int], shown_by: object
) -> Iterator[np.ndarray]:
    """Source frames [start, start + count) at `size`; InputError if the source is shorter."""
    info = probe(source_path)
    if start + count > info.frame_count:
        raise InputError(
            f"{shown_by}: {count} stylized frames from source frame {start} run past "
            f"the source's end ({info.frame_count} frames)"
        )
    return read_frames(info, start, start + count, size)


def report_dict(measures: ClipMeasures, size: tuple[int, int]) -> dict:
    """The JSON form of `measures`: every figure next to the names of the flows behind it."""
    return {
        "frames": measures.stylized.frames,
        "size": list(size),
        "estimator": measures.estimator,
        "carry_flow": measures.carry_flow,
        "stylized": measures.stylized.mean,
        "source": measures.source.mean,
        "flow_floor": measures.floor.mean,
        "ratio_to_source": ratio(measures.stylized.mean, measures.source.mean),
        "ratio_to_floor": measures.ratio_to_floor,
        "per_pair": list(measures.stylized.per_pair),
        "floor_per_pair": list(measures.floor.per_pair),
        "source_per_pair": list(measures.source.per_pair),
        "coverage": list(measures.stylized.coverage),
        "structure": measures.structure_mean,
        "structure_drift": measures.structure_drift,
        "structure_per_frame": list(measures.structure),
        "texture_energy_per_frame": list(measures.texture),
    }


# ---------------------------------------------------------------- helpers


def _frame_values(source: np.ndarray, stylized: np.ndarray) -> tuple[float, float]:
    return structure(source, stylized), texture_energy(stylized)


def _clip_measures(
    estimator: str, carry_flow: str, per_pair: list[tuple[float, float, float, float]], per_frame: list[tuple[float, float]]
) -> ClipMeasures:
    stylized, source, floor, coverage = (tuple(column) for column in zip(*per_pair)) if per_pair else ((),) * 4
    structures, textures = (tuple(column) for column in zip(*per_frame))
    return ClipMeasures(estimator, carry_flow, WarpingError(stylized, coverage), WarpingError(source, coverage),
                        WarpingError(floor, coverage), structures, textures)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 0.0 else math.nan


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _coverage(motion: PairMotion) -> float:
    return float(motion.mask.mean())


def _to_unit(frame: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; float input is taken as already in [0, 1] (the floor is carried so)."""
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    return frame.astype(np.float32, copy=False)


def _size_of(frame: np.ndarray) -> tuple[int, int]:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB HxWx3 frame, got shape {frame.shape}")
    return frame.shape[1], frame.shape[0]


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
        count, frames = len(files), (load_srgb8(file) for file in files)
    else:
        info = probe(path)
        count, frames = info.frame_count, read_frames(info, 0, info.frame_count, (info.width, info.height))
    if count < 2:
        raise InputError(f"{path}: E_warp needs at least 2 frames, got {count}")
    return count, frames


def _sequence_files(path: str | os.PathLike) -> list[Path] | None:
    """The frames of an image sequence in order, or None if `path` is not one."""
    text = str(path)
    if is_sequence_pattern(Path(text)) and not Path(text).is_file():
        return _pattern_files(Path(text))
    if Path(text).is_dir():
        files = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in _SEQUENCE_SUFFIXES)
        if not files:
            raise InputError(f"{path}: directory holds no image frames ({', '.join(_SEQUENCE_SUFFIXES)})")
        return files
    return None


def _pattern_files(pattern: Path) -> list[Path]:
    """Files matching e.g. ``frame.%04d.png``, ordered by number (gaps are an error)."""
    head, tail = PRINTF_NUMBER.split(pattern.name, maxsplit=1)[0::2]
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
    "EVALUATION_FLOW",
    "ClipMeasures",
    "PairMotion",
    "WarpingError",
    "defined_mean",
    "drift",
    "evaluate_clip",
    "measure_clip",
    "pair_floor",
    "pair_motion",
    "pair_warping_error",
    "structure",
    "texture_energy",
    "warping_error",
]
