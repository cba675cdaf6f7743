"""Optical flow, warping and the reliability mask on frames whose true motion is known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import metrics
from pipeline.flow import FLOW_METHODS, carry, entering_view, optical_flow, reliability, temporal_guide, warp

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WIDTH, HEIGHT = 128, 96
SHIFT = (2.5, -1.25)  # sub-pixel in x and y, so the flow is not a lucky integer
MARGIN = 8  # pixels whose true content left the frame or is interpolated from the border


def load_rgb(name: str, size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    bgr = cv2.imread(str(SAMPLES / name))
    assert bgr is not None, f"missing sample {name}"
    return cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def translated(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """target(x) = image(x - shift), so image(x) = target(x + shift): the flow image→target is shift."""
    matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def constant_flow(shift: tuple[float, float], shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    return np.broadcast_to(np.float32(shift), (*shape, 2)).copy()


def interior(array: np.ndarray) -> np.ndarray:
    return array[MARGIN:-MARGIN, MARGIN:-MARGIN]


@pytest.fixture(scope="module")
def frames() -> tuple[np.ndarray, np.ndarray]:
    source = load_rgb("kandinsky.jpg")
    return source, translated(source, SHIFT)


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_optical_flow_recovers_translation_with_documented_sign(frames, method):
    source, target = frames
    flow = optical_flow(source, target, method)
    assert flow.dtype == np.float32 and flow.shape == (HEIGHT, WIDTH, 2)
    error = np.hypot(flow[..., 0] - SHIFT[0], flow[..., 1] - SHIFT[1])
    assert np.median(interior(error)) < 0.25


def test_dis_alias_is_medium(frames):
    source, target = frames
    np.testing.assert_array_equal(optical_flow(source, target, "dis"), optical_flow(source, target, "dis-medium"))


def test_unknown_method_raises_listing_choices(frames):
    with pytest.raises(ValueError, match="dis-medium"):
        optical_flow(*frames, method="raft")


def test_mismatched_frames_raise(frames):
    with pytest.raises(ValueError):
        optical_flow(frames[0], frames[1][:-1])


def test_warp_with_integer_flow_reconstructs_source_exactly():
    source = load_rgb("kandinsky.jpg")
    target = translated(source, (3, -2))
    np.testing.assert_array_equal(interior(warp(target, constant_flow((3, -2)))), interior(source))


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(interior(np.abs(a.astype(np.float32) - b.astype(np.float32))).mean())


def test_warp_with_true_subpixel_flow_aligns_best(frames):
    source, target = frames
    # Two half-pixel bilinear resamplings blur this fine-grained painting (~11 levels of error),
    # so judge alignment against nearby wrong flows rather than by an absolute bound.
    true_error = mean_abs_error(warp(target, constant_flow(SHIFT)), source)
    for dx, dy in [(0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)]:
        wrong_flow = constant_flow((SHIFT[0] + dx, SHIFT[1] + dy))
        assert true_error < mean_abs_error(warp(target, wrong_flow), source)
    assert true_error < 0.35 * mean_abs_error(target, source)


def test_warp_with_estimated_flow_beats_no_warp(frames):
    source, target = frames
    warped = warp(target, optical_flow(source, target))
    assert mean_abs_error(warped, source) < 0.35 * mean_abs_error(target, source)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((HEIGHT, WIDTH, 3), np.uint8),
        np.zeros((HEIGHT, WIDTH, 3), np.float32),
        np.zeros((HEIGHT, WIDTH), np.float32),
        np.zeros((HEIGHT, WIDTH), np.uint8),
        np.zeros((HEIGHT, WIDTH, 1), np.float32),
    ],
    ids=["uint8-rgb", "float32-rgb", "float32-gray", "uint8-gray", "float32-1ch"],
)
def test_warp_keeps_dtype_and_shape(image):
    warped = warp(image, constant_flow(SHIFT))
    assert warped.dtype == image.dtype and warped.shape == image.shape


def test_warp_float_is_exact_for_integer_flow():
    image = np.random.default_rng(0).random((HEIGHT, WIDTH, 3), dtype=np.float32)
    warped = warp(image, constant_flow((3.0, -2.0)))
    np.testing.assert_allclose(warped[2:, : WIDTH - 3], image[: HEIGHT - 2, 3:], atol=1e-6)


def test_translation_interior_is_reliable_with_estimated_flows(frames):
    source, target = frames
    mask = reliability(optical_flow(source, target), optical_flow(target, source))
    assert mask.dtype == np.float32 and mask.shape == (HEIGHT, WIDTH)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert interior(mask).mean() > 0.95


def test_translation_marks_pixels_leaving_the_frame():
    shift = (2.5, -1.25)
    mask = reliability(constant_flow(shift), constant_flow((-shift[0], -shift[1])))
    # x + 2.5 > W - 1 for the last three columns; y - 1.25 < 0 for the first two rows.
    assert not mask[:, -3:].any() and not mask[:2, :].any()
    assert mask[2:, :-3].all()


def moving_square_scene(step: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[slice, slice]]:
    """A starry-night square over a static Kandinsky, moved right by ``step`` px.

    Returns previous, current, true flow current→previous, true flow previous→current, and
    the square's rows and columns in the previous frame.
    """
    background = load_rgb("kandinsky.jpg")
    patch = load_rgb("starry-night.jpg", (32, 32))
    rows, cols = slice(32, 64), slice(40, 72)
    moved_cols = slice(cols.start + step, cols.stop + step)
    previous, current = background.copy(), background.copy()
    previous[rows, cols] = patch
    current[rows, moved_cols] = patch
    flow, reverse_flow = constant_flow((0, 0)), constant_flow((0, 0))
    flow[rows, moved_cols] = (-step, 0)
    reverse_flow[rows, cols] = (step, 0)
    return previous, current, flow, reverse_flow, (rows, cols)


def test_occlusion_marks_uncovered_background_with_true_flows():
    step = 6
    _, _, flow, reverse_flow, (rows, cols) = moving_square_scene(step)
    mask = reliability(flow, reverse_flow)
    # Background the square covered in the previous frame has no match there.
    assert not mask[rows, cols.start : cols.start + step].any()
    # Inside the moved square, away from its edges, the flow is consistent.
    assert mask[rows.start + 2 : rows.stop - 2, cols.start + step + 2 : cols.stop + step - 2].all()
    far_background = np.ones_like(mask, bool)
    far_background[rows.start - 4 : rows.stop + 4, cols.start - 4 : cols.stop + step + 4] = False
    assert mask[far_background].all()


def test_occlusion_is_found_by_temporal_guide_with_estimated_flows():
    step = 6
    previous, current, _, _, (rows, cols) = moving_square_scene(step)
    previous_stylized = (255 - previous).astype(np.float32) / 255  # any image aligned with previous
    warped, mask = temporal_guide(previous, current, previous_stylized, "dis-medium")
    assert warped.shape == previous_stylized.shape and warped.dtype == np.float32
    uncovered = mask[rows.start + 4 : rows.stop - 4, cols.start : cols.start + step]
    assert uncovered.mean() < 0.2
    # The outermost pixels are left out: any estimated flow pointing outwards there, however
    # tiny, leaves the frame.
    far_background = mask[1:-1, 1:24]
    assert far_background.mean() > 0.98
    # Where the mask trusts it, the warped previous output matches the current frame's alignment.
    current_stylized = (255 - current).astype(np.float32) / 255
    trusted = mask.astype(bool)
    assert np.abs(warped - current_stylized)[trusted].mean() < 0.03


def test_motion_boundary_is_marked_along_a_flow_step():
    step_column, speed = 64, 5.0
    flow, reverse_flow = constant_flow((0, 0)), constant_flow((0, 0))
    flow[:, step_column:] = (speed, 0)
    reverse_flow[:, step_column:] = (-speed, 0)  # consistent, so only the step can fail
    mask = reliability(flow, reverse_flow)
    assert not mask[:, step_column - 1 : step_column + 1].any()
    assert mask[:, : step_column - 1].all()
    assert mask[:, step_column + 1 : WIDTH - int(speed) - 1].all()


def test_smooth_zoom_is_not_a_motion_boundary():
    grid_x, grid_y = np.meshgrid(np.arange(WIDTH, dtype=np.float32), np.arange(HEIGHT, dtype=np.float32))
    scale = 0.02  # 2 % zoom: gradients 0.02 per px, energy 8e-4 below the 0.002 floor
    flow = np.stack([scale * (grid_x - WIDTH / 2), scale * (grid_y - HEIGHT / 2)], axis=-1)
    reverse_flow = -flow / (1 + scale)
    mask = reliability(flow, reverse_flow)
    assert interior(mask).all()


def test_temporal_guide_carries_the_stylized_frame_without_blurring_it_away():
    """A chain warps every frame again: bilinear resampling at half a pixel is a low-pass filter
    that compounds, and the optimization then repaints the lost texture over the content."""
    rng = np.random.default_rng(0)
    stylized = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # all fine detail
    source = load_rgb("kandinsky.jpg")
    current = translated(source, (0.5, 0.0))
    carried, _ = temporal_guide(source, current, stylized, "dis-medium")
    bilinear = warp(stylized, optical_flow(current, source, "dis-medium"))

    def detail(image):
        return cv2.Laplacian(cv2.cvtColor(interior(image), cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F).var()
    assert detail(carried) > 1.3 * detail(bilinear)


def test_a_pan_brings_the_columns_on_its_leading_side_into_view():
    """The view moves 6 px right: the current frame's last columns show what the previous frame
    did not; a chain starts them from the source, not from the border smeared in."""
    wide = load_rgb("kandinsky.jpg", (WIDTH + 6, HEIGHT))
    previous, current = wide[:, :WIDTH], wide[:, 6:]
    entering = entering_view(optical_flow(current, previous))
    assert entering[8:-8, -4:].mean() > 0.9  # the new columns (one or two at the edge are estimated in)
    assert not entering[:, :-8].any()


def test_a_carried_stylized_frame_keeps_its_fine_detail_and_its_colours():
    """Resampled at a sub-pixel shift, a painting's finest strokes fade (Lanczos too); the carry
    gives their energy back, without changing the broad colours or moving anything."""
    painting = cv2.cvtColor(cv2.resize(cv2.imread(str(SAMPLES / "starry-night.jpg")), (128, 96),
                                       interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    half_pixel = np.full((96, 128, 2), 0.5, np.float32)
    plain = warp(painting, half_pixel, cv2.INTER_LANCZOS4)
    carried = carry(painting, half_pixel)

    def fine(image):
        return metrics.texture_energy(np.clip(image, 0, 255).astype(np.uint8)[4:-4, 4:-4])
    assert fine(plain) < 0.7 * fine(painting)  # half a pixel both ways: the worst case of a carry
    assert fine(carried) > 1.2 * fine(plain)  # (at most 1.5x the amplitude comes back)
    assert fine(carried) < 1.05 * fine(painting)  # given back, not sharpened beyond it

    def broad(image):
        return cv2.GaussianBlur(image.astype(np.float32), (0, 0), 3)[8:-8, 8:-8]
    assert np.abs(broad(carried) - broad(plain)).mean() < 1.0
