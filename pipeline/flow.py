"""Optical flow, backward warping and the flow reliability mask of Ruder et al. 2016.

Convention used throughout: a flow ``w`` from ``source`` to ``target`` satisfies
``source(x) ≈ target(x + w(x))``.  Warping ``target`` backward along ``w`` therefore
produces an image aligned with ``source``: to bring the previous stylized frame onto the
current frame, use ``warp(prev_stylized, optical_flow(current, previous))``.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from . import detail
from .config import FLOW_METHODS  # noqa: F401 - what a render may warm-start with (a setting's choices)

# Measuring only: DeepFlow is ~20x slower than DIS medium, but shares nothing with DIS, so the
# optimizer cannot have fitted the instrument that judges it.
EVALUATION_ONLY_FLOW_METHODS = ("deepflow",)
_ALIASES = {"dis": "dis-medium"}
_DIS_PRESETS = {
    "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Farneback: a 3-level pyramid and a 15 px window (OpenCV's sample) follow motions of tens of
# pixels; poly_n=5 with poly_sigma=1.1 is the pairing OpenCV's documentation recommends.
_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)

# How a stylized frame is carried along the flow (see temporal_guide and carry).
STYLIZED_INTERPOLATION = cv2.INTER_LANCZOS4
# The detail a carry gives back: what a 1 px blur removes (resampling loses it at any frame size),
# its energy compared over 4 px windows, restored by at most 1.5x.
CARRIED_DETAIL_SIGMA, CARRIED_DETAIL_WINDOW, CARRIED_DETAIL_GAIN = 1.0, 4.0, 1.5

# Thresholds of Sundaram et al. 2010, as used by Ruder et al. 2016 (consistencyChecker).
_FB_RELATIVE = 0.01
_FB_ABSOLUTE = 0.5
_EDGE_RELATIVE = 0.01
_EDGE_ABSOLUTE = 0.002


def canonical_method(method: str, for_evaluation: bool = False) -> str:
    """The canonical name of a flow method; ValueError naming the choices if unknown.

    `for_evaluation` also admits the methods only measurements use (EVALUATION_ONLY_FLOW_METHODS).
    """
    known = FLOW_METHODS + (EVALUATION_ONLY_FLOW_METHODS if for_evaluation else ())
    name = _ALIASES.get(method, method)
    if name not in known:
        choices = ", ".join(known + tuple(_ALIASES))
        raise ValueError(f"unknown optical flow method {method!r}; choose one of: {choices}")
    return name


def optical_flow(source: np.ndarray, target: np.ndarray, method: str = "dis-medium") -> np.ndarray:
    """Dense flow (float32 HxWx2, dx then dy) with ``source(x) ≈ target(x + flow(x))``.

    ``source`` and ``target`` are RGB uint8 HxWx3 (grayscale HxW is accepted too).
    """
    name = canonical_method(method, for_evaluation=True)
    if source.shape != target.shape:
        raise ValueError(f"frames differ in shape: {source.shape} vs {target.shape}")
    source_gray, target_gray = _to_gray(source), _to_gray(target)
    if name == "farneback":
        flow = cv2.calcOpticalFlowFarneback(source_gray, target_gray, None, **_FARNEBACK)
    elif name == "deepflow":
        flow = _deepflow().calc(source_gray, target_gray, None)
    else:
        # A fresh object per call: DIS keeps state and is not safe to share across threads.
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[name])
        flow = dis.calc(source_gray, target_gray, None)
    return np.ascontiguousarray(flow, dtype=np.float32)


_PER_THREAD = threading.local()


def _deepflow() -> cv2.DenseOpticalFlow:
    """DeepFlow, made once per thread and reused (like DIS, an OpenCV flow object is not for sharing across threads)."""
    if not hasattr(_PER_THREAD, "deepflow"):
        _PER_THREAD.deepflow = cv2.optflow.createOptFlow_DeepFlow()
    return _PER_THREAD.deepflow


def _to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 single-channel, contiguous: the only input both OpenCV flows accept."""
    if image.dtype != np.uint8:
        raise ValueError(f"optical flow expects uint8 frames, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"optical flow expects HxWx3 RGB or HxW gray frames, got shape {image.shape}")


def sample_positions(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute float32 coordinates x + flow(x), as (map_x, map_y) for cv2.remap."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return grid_x + flow[..., 0], grid_y + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: ``output(x) = image(x + flow(x))``, bilinear unless told, border replicated.

    Keeps the dtype (uint8 rounds and saturates, float32 stays exact up to OpenCV's 1/32 px
    sub-pixel grid) and the shape (HxW, HxWx1, HxWxC) of ``image``. Bicubic overshoots at
    edges: a float image may leave its range.
    """
    if image.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and flow {flow.shape[:2]} differ in size")
    map_x, map_y = sample_positions(flow)
    warped = cv2.remap(np.ascontiguousarray(image), map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
    # cv2.remap drops a trailing channel axis of size 1; restore the caller's shape.
    return warped.reshape(image.shape)


def reliability(flow: np.ndarray, reverse_flow: np.ndarray) -> np.ndarray:
    """Per-pixel weight c (float32 HxW, 0 or 1) of ``flow`` given ``reverse_flow``.

    ``flow`` maps the current frame to the previous one, ``reverse_flow`` the previous to the
    current.  As Ruder, Dosovitskiy & Brox 2016 (consistencyChecker), c is 0 where x + w(x)
    leaves the frame, where the forward-backward check fails, or on a motion boundary.
    The reference then blurs the mask (sigma 0.8); callers wanting soft weights can do so.
    """
    if flow.shape != reverse_flow.shape or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flows must both be HxWx2, got {flow.shape} and {reverse_flow.shape}")
    flow = flow.astype(np.float32, copy=False)
    reverse_at_target = warp(reverse_flow.astype(np.float32, copy=False), flow)
    reliable = lands_inside_frame(flow) & forward_backward_consistent(flow, reverse_at_target)
    reliable &= ~motion_boundary(flow)
    return reliable.astype(np.float32)


def lands_inside_frame(flow: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """True where x + w(x) lies within the frame (pixel centres 0 … W-1, 0 … H-1), widened by
    `margin` pixels on every side.

    The reference requires floor(x+w)+1 < W, which also drops the last row and column for zero
    motion; the closed interval keeps them, a deliberate one-pixel difference.
    """
    height, width = flow.shape[:2]
    target_x, target_y = sample_positions(flow)
    return ((target_x >= -margin) & (target_x <= width - 1 + margin)
            & (target_y >= -margin) & (target_y <= height - 1 + margin))


def entering_view(flow: np.ndarray) -> np.ndarray:
    """True where the current frame shows what lay outside the previous one (`flow`, current →
    previous, leaves the frame): the view panned or zoomed out onto it. A warp can only smear the
    border's pixels in there. Within half a pixel of the border a sample is the border pixel's
    own, not an entering one."""
    return ~lands_inside_frame(flow, margin=0.5)


def forward_backward_consistent(flow: np.ndarray, reverse_at_target: np.ndarray) -> np.ndarray:
    """True where going there and back returns near the start: |w + ŵ|² < 0.01(|w|² + |ŵ|²) + 0.5."""
    round_trip = _squared_norm(flow + reverse_at_target)
    # ">=" fails the pixel, as the reference does.
    return round_trip < _FB_RELATIVE * (_squared_norm(flow) + _squared_norm(reverse_at_target)) + _FB_ABSOLUTE


def motion_boundary(flow: np.ndarray) -> np.ndarray:
    """True where the flow changes sharply: |∇u|² + |∇v|² > 0.01|w|² + 0.002.

    Gradients are central differences ([-1/2, 0, 1/2], the reference's CDerivative(3)),
    one-sided at the border.
    """
    d_dy, d_dx = np.gradient(flow, axis=(0, 1))
    gradient_energy = _squared_norm(d_dx) + _squared_norm(d_dy)
    return gradient_energy > _EDGE_RELATIVE * _squared_norm(flow) + _EDGE_ABSOLUTE


def _squared_norm(vectors: np.ndarray) -> np.ndarray:
    """Squared length of the 2-vectors in the last axis."""
    return np.square(vectors[..., 0]) + np.square(vectors[..., 1])


def flows_between(previous: np.ndarray, current: np.ndarray, method: str = "dis-medium") -> tuple[np.ndarray, np.ndarray]:
    """The flow current → previous (where a backward warp onto `current` samples) and previous → current."""
    return optical_flow(current, previous, method), optical_flow(previous, current, method)


def temporal_guide(
    previous: np.ndarray, current: np.ndarray, previous_stylized: np.ndarray, method: str = "dis-medium",
    flows: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The previous stylized frame carried onto the current frame, and where to trust it;
    `flows`: flows_between's, when the caller has them (it needs them too).

    Carried with Lanczos (8x8) resampling: a chain warps every frame again, and interpolation at
    sub-pixel shifts is a low-pass filter that compounds (on a real clip, a stylized frame carried
    eight steps kept 4 % of its fine detail bilinear, 41 % bicubic, 64 % Lanczos); each frame's
    optimization then repaints the lost texture without regard to the content's edges, and the
    chain drifts away from the content.
    """
    flow, reverse_flow = flows or flows_between(previous, current, method)
    return carry(previous_stylized, flow), reliability(flow, reverse_flow)


def carry(stylized: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """A stylized frame carried along `flow` (float32 RGB): Lanczos, then the finest detail,
    which any resampling at sub-pixel shifts attenuates, scaled back to the energy it had where
    it came from (detail.with_energy, at most CARRIED_DETAIL_GAIN).

    Without it, a chain lost a fifth of its fine detail in the first warm frame and kept losing
    it: 200-frame pan and zoom, 192 px, first frame's texture 1.27x the next four's (floor 1.25),
    0.57x by frame 21; with it 1.20x and 0.61x, with E_warp ÷ floor 0.535 -> 0.531 and
    structure 0.796 -> 0.794 (benchmarks/RESULTS.md, "fine detail the carry gives back")."""
    carried = warp(stylized, flow, STYLIZED_INTERPOLATION)
    had = warp(detail.energy(stylized, CARRIED_DETAIL_SIGMA, CARRIED_DETAIL_WINDOW), flow)
    return detail.with_energy(carried, had, CARRIED_DETAIL_SIGMA, CARRIED_DETAIL_WINDOW, CARRIED_DETAIL_GAIN)
