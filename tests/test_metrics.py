"""E_warp (Lai et al. 2018) on synthetic clips whose motion is known: a real image translated by
a whole number of pixels per frame, so every consistent output is an exact shift of its past."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.images import save_rgb
from pipeline.metrics import (
    PairMotion,
    WarpingError,
    evaluate_clip,
    flow_floor,
    pair_warping_error,
    source_motions,
    warping_error,
)
from pipeline.video import probe, read_frames

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WIDTH, HEIGHT = 128, 96
SHIFT = (3, 2)  # (dx, dy) pixels per frame: content moves right and down
FRAMES = 6
NEAR_ZERO = 1e-4  # measured: 1e-5 .. 3e-5 for exact shifts; DIS is accurate but not perfect
NOISE_FLOOR = 0.05  # independent uniform noise: E[(a-b)^2] = 1/6 per channel


def load_sample(name: str) -> np.ndarray:
    bgr = cv2.imread(str(SAMPLES / name))
    assert bgr is not None, f"missing sample {name}"
    return cv2.cvtColor(cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def moving(image: np.ndarray) -> list[np.ndarray]:
    """Frame k is `image` shifted by k·SHIFT (wrapping: what leaves on one side enters the other)."""
    return [np.roll(image, (k * SHIFT[1], k * SHIFT[0]), axis=(0, 1)) for k in range(FRAMES)]


def noise_frame(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def fresh_in_strips(first: np.ndarray, rows: slice, cols: slice, seed: int = 0) -> list[np.ndarray]:
    """A consistent clip, except that each new frame gets new noise in the given rows and columns."""
    rng = np.random.default_rng(seed)
    frames = [first]
    for _ in range(1, FRAMES):
        frame = np.roll(frames[-1], (SHIFT[1], SHIFT[0]), axis=(0, 1))
        fresh = noise_frame(rng)
        frame[rows], frame[:, cols] = fresh[rows], fresh[:, cols]
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def source() -> list[np.ndarray]:
    return moving(load_sample("kandinsky.jpg"))


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return load_sample("starry-night.jpg")


@pytest.fixture(scope="module")
def noise_error(source) -> WarpingError:
    rng = np.random.default_rng(1)
    return warping_error(source, [noise_frame(rng) for _ in range(FRAMES)])


# ---------------------------------------------------------------- warping_error


def test_source_of_pure_translation_scores_near_zero(source):
    error = warping_error(source, source)
    assert len(error.per_pair) == FRAMES - 1 and error.frames == FRAMES
    assert error.mean < NEAR_ZERO
    assert error.mean == pytest.approx(np.mean(error.per_pair))


def test_output_moving_with_the_content_scores_near_zero(source, painting):
    assert warping_error(source, moving(painting)).mean < NEAR_ZERO


def test_per_pixel_colour_map_of_the_source_is_consistent_too(source):
    # Measured 1.1e-4: a high-contrast map magnifies sub-pixel flow error, as DESIGN.md §2 notes.
    colour_mapped = [cv2.applyColorMap(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLORMAP_JET) for f in source]
    assert warping_error(source, colour_mapped).mean < 5 * NEAR_ZERO


def test_independent_noise_per_frame_scores_orders_of_magnitude_higher(source, painting, noise_error):
    assert noise_error.mean > NOISE_FLOOR
    assert noise_error.mean > 1000 * warping_error(source, moving(painting)).mean


def test_same_painting_on_every_frame_is_not_consistent_with_a_moving_source(source, painting):
    # A frozen output is "stable" only if E_warp ignored the motion; it must not.
    assert warping_error(source, [painting] * FRAMES).mean > 50 * NEAR_ZERO


def test_occluded_pixels_do_not_count(source, painting):
    # New noise only where content enters the frame (top rows, left columns): nothing in the
    # previous frame shows those pixels, so the mask must drop them.
    entering = fresh_in_strips(painting, slice(0, SHIFT[1]), slice(0, SHIFT[0]))
    masked = warping_error(source, entering)
    unmasked = _error_without_mask(source, entering)
    assert masked.mean < 1.5 * NEAR_ZERO
    assert unmasked > 10 * masked.mean  # the strips would have counted without the mask
    assert all(0.9 < share < 1.0 for share in masked.coverage)


def test_fresh_noise_inside_the_frame_does_count(source, painting):
    # The same amount of fresh noise away from the entering border is real flicker.
    inside = fresh_in_strips(painting, slice(40, 40 + SHIFT[1]), slice(60, 60 + SHIFT[0]))
    assert warping_error(source, inside).mean > 20 * NEAR_ZERO


def _error_without_mask(source: list[np.ndarray], stylized: list[np.ndarray]) -> float:
    values = []
    for index, (_, _, motion) in enumerate(source_motions(source, (WIDTH, HEIGHT))):
        everywhere = PairMotion(motion.flow, motion.reverse_flow, np.ones_like(motion.mask))
        values.append(pair_warping_error(stylized[index], stylized[index + 1], everywhere))
    return float(np.mean(values))


def test_source_is_resized_to_the_stylized_size(source, painting):
    large_source = [cv2.resize(f, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_CUBIC) for f in source]
    assert warping_error(large_source, moving(painting)).mean < NEAR_ZERO


def test_empty_mask_gives_nan_pair_left_out_of_the_mean(source):
    motion = next(source_motions(source, (WIDTH, HEIGHT)))[2]
    nowhere = PairMotion(motion.flow, motion.reverse_flow, np.zeros_like(motion.mask))
    assert math.isnan(pair_warping_error(source[0], source[1], nowhere))
    assert WarpingError((math.nan, 0.5), (0.0, 1.0)).mean == 0.5


def test_clip_lengths_must_match(source):
    with pytest.raises(ValueError, match="frames"):
        warping_error(source, source[:-1])
    with pytest.raises(ValueError, match="frames"):
        warping_error(source[:-1], source)


# ---------------------------------------------------------------- flow floor


def test_flow_floor_carries_the_first_frame_along_the_motion(source, painting):
    floor = flow_floor(source, painting)
    assert len(floor) == FRAMES and all(f.dtype == np.uint8 and f.shape == painting.shape for f in floor)
    np.testing.assert_array_equal(floor[0], painting)
    # Away from the entering border it is the painting shifted with the content (up to resampling).
    last = floor[-1].astype(np.float32)
    expected = moving(painting)[-1].astype(np.float32)
    margin = (FRAMES - 1) * max(SHIFT) + 4
    assert np.abs(last - expected)[margin:-4, margin:-4].mean() < 8


def test_flow_floor_scores_like_a_consistent_clip_far_below_noise(source, painting, noise_error):
    floor_error = warping_error(source, flow_floor(source, painting)).mean
    consistent_error = warping_error(source, moving(painting)).mean
    assert floor_error < NEAR_ZERO
    assert floor_error < noise_error.mean / 1000
    assert floor_error < 20 * consistent_error


# ---------------------------------------------------------------- evaluate_clip


def write_lossless_video(frames: list[np.ndarray], path: Path) -> Path:
    # FFV1: lossless, so the decoded source is exactly `frames`. Through H.264 (yuv420p, crf 18)
    # this detailed 128x96 clip picks up MSE 2.5e-3 per frame and its own E_warp becomes 1.7e-3,
    # all codec noise: too much for a test of the metric itself.
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), 25, (WIDTH, HEIGHT))
    assert writer.isOpened(), "OpenCV's FFmpeg backend cannot write FFV1"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def source_video(source, tmp_path_factory) -> Path:
    return write_lossless_video(source, tmp_path_factory.mktemp("clips") / "source.mkv")


def test_lossless_test_video_decodes_exactly(source, source_video):
    info = probe(source_video)
    decoded = list(read_frames(info, 0, info.frame_count, (WIDTH, HEIGHT)))
    assert len(decoded) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(decoded, source))


EXPECTED_KEYS = {
    "frames", "size", "method", "stylized", "source", "flow_floor",
    "ratio_to_source", "ratio_to_floor", "per_pair", "coverage",
}


def test_evaluate_clip_against_itself_has_ratio_one(source_video):
    report = evaluate_clip(source_video, source_video)
    assert set(report) == EXPECTED_KEYS
    assert report["frames"] == FRAMES and report["size"] == [WIDTH, HEIGHT]
    assert len(report["per_pair"]) == FRAMES - 1
    assert all(math.isfinite(report[key]) for key in ("stylized", "source", "flow_floor"))
    assert report["ratio_to_source"] == pytest.approx(1.0)
    assert report["source"] < NEAR_ZERO


def test_evaluate_clip_reads_png_sequences_at_their_own_size(source_video, painting, tmp_path):
    half = (WIDTH // 2, HEIGHT // 2)
    for index, frame in enumerate(moving(painting)):
        save_rgb(tmp_path / f"out.{index:04d}.png", cv2.resize(frame, half, interpolation=cv2.INTER_AREA))
    by_directory = evaluate_clip(source_video, tmp_path)
    by_pattern = evaluate_clip(source_video, tmp_path / "out.%04d.png")
    assert by_directory == by_pattern
    assert by_directory["size"] == list(half) and by_directory["frames"] == FRAMES
    assert by_directory["stylized"] < 10 * NEAR_ZERO


def test_evaluate_clip_matches_the_in_memory_functions(source_video, painting, tmp_path):
    stylized = fresh_in_strips(painting, slice(40, 40 + SHIFT[1]), slice(60, 60 + SHIFT[0]))
    for index, frame in enumerate(stylized):
        save_rgb(tmp_path / f"{index:03d}.png", frame)
    report = evaluate_clip(source_video, tmp_path)
    info = probe(source_video)
    decoded = list(read_frames(info, 0, info.frame_count, (WIDTH, HEIGHT)))
    np.testing.assert_allclose(report["per_pair"], warping_error(decoded, stylized).per_pair, rtol=1e-6)
    assert report["source"] == pytest.approx(warping_error(decoded, decoded).mean, rel=1e-6)
    # The report carries the floor in float, flow_floor() rounds each frame to uint8.
    floor_mean = warping_error(decoded, flow_floor(decoded, stylized[0])).mean
    assert report["flow_floor"] == pytest.approx(floor_mean, rel=0.3, abs=1e-5)
    assert report["ratio_to_floor"] > 10


def test_evaluate_clip_refuses_a_stylized_clip_longer_than_the_source(source_video, painting, tmp_path):
    for index in range(FRAMES + 1):
        save_rgb(tmp_path / f"{index:03d}.png", painting)
    with pytest.raises(Exception, match="past the source's end"):
        evaluate_clip(source_video, tmp_path)


def test_evaluate_clip_aligns_a_stylized_range_with_source_start(source_video, source, painting, tmp_path):
    start = 2
    for index, frame in enumerate(moving(painting)[start:]):
        save_rgb(tmp_path / f"{index:03d}.png", frame)
    aligned = evaluate_clip(source_video, tmp_path, source_start=start)
    assert aligned["frames"] == FRAMES - start
    assert aligned["stylized"] < NEAR_ZERO
    with pytest.raises(Exception, match="past the source's end"):
        evaluate_clip(source_video, tmp_path, source_start=start + 1)
