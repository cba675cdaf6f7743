"""E_warp (Lai et al. 2018), its per-pair flow floor, structure and texture energy on synthetic
clips whose motion is known: a real image translated by a whole number of pixels per frame, so
every consistent output is an exact shift of its past. E_warp is measured with DeepFlow, the
evaluation's default, unless a test says otherwise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import evaluate, metrics
from pipeline.errors import InputError
from pipeline.flow import canonical_method, optical_flow, warp
from pipeline.images import save_rgb
from pipeline.metrics import (
    PairMotion,
    WarpingError,
    evaluate_clip,
    measure_clip,
    pair_motion,
    pair_warping_error,
    warping_error,
)
from pipeline.video import probe, read_frames

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WIDTH, HEIGHT = 128, 96
SHIFT = (3, 2)  # (dx, dy) pixels per frame: content moves right and down
FRAMES = 6
NEAR_ZERO = 1e-4  # measured with DeepFlow: 7e-7 for an exactly shifted painting, 1.6e-6 for the source
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


def carried_along_render_flow(source: list[np.ndarray], first: np.ndarray) -> list[np.ndarray]:
    """What a warm start with no optimization makes: each frame the previous one carried along
    the render's flow (DIS medium, source t+1 → t), rounded to uint8 as frames are stored."""
    frames = [first]
    for previous, current in zip(source, source[1:]):
        carried = warp(frames[-1].astype(np.float32), optical_flow(current, previous, "dis-medium"))
        frames.append(np.rint(np.clip(carried, 0, 255)).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def source() -> list[np.ndarray]:
    return moving(load_sample("kandinsky.jpg"))


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return load_sample("starry-night.jpg")


@pytest.fixture(scope="module")
def consistent(source, painting) -> metrics.ClipMeasures:
    """A painting moving exactly with the content: the ideal output."""
    return measure_clip(source, moving(painting))


@pytest.fixture(scope="module")
def noisy(source) -> metrics.ClipMeasures:
    """Independent noise on every frame: all flicker, no content."""
    rng = np.random.default_rng(1)
    return measure_clip(source, [noise_frame(rng) for _ in range(FRAMES)])


# ---------------------------------------------------------------- E_warp


def test_evaluation_defaults_to_deepflow_which_a_render_cannot_use(consistent):
    assert metrics.EVALUATION_FLOW == "deepflow" and consistent.estimator == "deepflow"
    assert consistent.carry_flow == "dis-medium"  # the default preset's flow
    with pytest.raises(ValueError, match="deepflow"):
        canonical_method("bogus", for_evaluation=True)  # the choices name it
    with pytest.raises(ValueError):
        canonical_method("deepflow")  # not a render's flow


def test_source_of_pure_translation_scores_near_zero(source):
    error = warping_error(source, source)
    assert len(error.per_pair) == FRAMES - 1 and error.frames == FRAMES
    assert error.mean < NEAR_ZERO
    assert error.mean == pytest.approx(np.mean(error.per_pair))


def test_output_moving_with_the_content_scores_near_zero_and_noise_far_above(consistent, noisy):
    assert consistent.stylized.mean < NEAR_ZERO
    assert noisy.stylized.mean > NOISE_FLOOR
    assert noisy.stylized.mean > 1000 * consistent.stylized.mean


@pytest.mark.parametrize("estimator", ["farneback", "dis-medium"])
def test_other_estimators_agree_on_known_motion(source, painting, estimator):
    assert warping_error(source, moving(painting), estimator).mean < NEAR_ZERO


def test_per_pixel_colour_map_of_the_source_is_consistent_too(source):
    colour_mapped = [cv2.applyColorMap(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLORMAP_JET) for f in source]
    assert warping_error(source, colour_mapped).mean < 5 * NEAR_ZERO


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
    for index in range(FRAMES - 1):
        motion = pair_motion(source[index], source[index + 1])
        everywhere = PairMotion(motion.flow, motion.reverse_flow, np.ones_like(motion.mask))
        values.append(pair_warping_error(stylized[index], stylized[index + 1], everywhere))
    return float(np.mean(values))


def test_source_is_resized_to_the_stylized_size(source, painting):
    large_source = [cv2.resize(f, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_CUBIC) for f in source]
    assert warping_error(large_source, moving(painting)).mean < NEAR_ZERO


def test_empty_mask_gives_nan_pair_left_out_of_the_mean(source):
    motion = pair_motion(source[0], source[1])
    nowhere = PairMotion(motion.flow, motion.reverse_flow, np.zeros_like(motion.mask))
    assert math.isnan(pair_warping_error(source[0], source[1], nowhere))
    assert WarpingError((math.nan, 0.5), (0.0, 1.0)).mean == 0.5


def test_clip_lengths_must_match(source):
    with pytest.raises(ValueError, match="frames"):
        warping_error(source, source[:-1])
    with pytest.raises(ValueError, match="frames"):
        warping_error(source[:-1], source)


# ---------------------------------------------------------------- per-pair flow floor


def test_floor_is_below_a_flickering_clip(source, painting, noisy):
    inside = measure_clip(source, fresh_in_strips(painting, slice(40, 40 + SHIFT[1]), slice(60, 60 + SHIFT[0])))
    for clip in (noisy, inside):
        assert len(clip.floor.per_pair) == FRAMES - 1
        assert all(f <= e for f, e in zip(clip.floor.per_pair, clip.stylized.per_pair))
        assert clip.ratio_to_floor > 10


def test_a_clip_that_only_follows_the_render_flow_sits_on_its_floor(source, painting):
    clip = measure_clip(source, carried_along_render_flow(source, painting))
    assert clip.ratio_to_floor == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(clip.stylized.per_pair, clip.floor.per_pair, rtol=0.15)
    assert clip.ratio_to_floor == pytest.approx(clip.stylized.mean / clip.floor.mean)  # a ratio of means


def test_floor_of_a_pair_depends_on_that_pair_only(source, painting):
    # Not one frame carried through the whole clip (that floor sinks as the carried frame blurs).
    whole = measure_clip(source, moving(painting))
    tail = measure_clip(source[2:], moving(painting)[2:])
    np.testing.assert_allclose(tail.floor.per_pair, whole.floor.per_pair[2:], rtol=1e-6)
    assert min(whole.floor.per_pair) > 0.1 * max(whole.floor.per_pair)


def test_floor_carried_with_the_estimators_own_flow_is_only_resampling_blur(source, painting):
    own = measure_clip(source, moving(painting), "dis-medium", carry_flow="dis-medium")
    independent = measure_clip(source, moving(painting), "deepflow", carry_flow="dis-medium")
    assert own.floor.mean < NEAR_ZERO and independent.floor.mean < NEAR_ZERO
    assert own.carry_flow == independent.carry_flow == "dis-medium"


# ---------------------------------------------------------------- structure and texture


def test_structure_is_one_for_identical_frames_and_near_zero_for_unrelated_noise(source, consistent, noisy):
    assert metrics.structure(source[0], source[0]) == pytest.approx(1.0, abs=1e-9)
    assert abs(noisy.structure_mean) < 0.1
    assert abs(consistent.structure_mean) < 0.1  # a painting unrelated to the source
    assert len(noisy.structure) == len(noisy.texture) == FRAMES


def test_structure_measures_at_the_stylized_size(source):
    large = cv2.resize(source[0], (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_CUBIC)
    assert metrics.structure(large, source[0]) > 0.98


def test_structure_of_a_flat_frame_is_undefined(source):
    assert math.isnan(metrics.structure(source[0], np.full_like(source[0], 128)))


def test_drift_falls_below_one_when_the_edges_fade(source):
    # Each frame keeps less of the source and more noise: the edges fade over the clip.
    rng = np.random.default_rng(3)
    fading = [np.rint((1 - k / FRAMES) * frame + (k / FRAMES) * noise_frame(rng)).astype(np.uint8)
              for k, frame in enumerate(source)]
    clip = measure_clip(source, fading)
    assert clip.structure[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(clip.structure, clip.structure[1:]))
    assert clip.structure_drift < 0.8
    assert measure_clip(source, source).structure_drift == pytest.approx(1.0)


def test_drift_compares_quarters():
    assert metrics.drift([1.0, 0.9, 0.8, 0.5]) == pytest.approx(0.5)  # one frame per quarter
    assert metrics.drift([0.6, 0.4] + [0.3] * 4 + [0.2, 0.3]) == pytest.approx(0.25 / 0.5)
    assert math.isnan(metrics.drift([0.7]))


def test_texture_energy_of_noise_matches_the_laplacian_variance():
    # Laplacian of i.i.d. pixels: 4 neighbours minus 4x the centre, variance (4 + 16)·σ².
    grey = np.random.default_rng(4).integers(0, 256, (200, 200), dtype=np.uint8)
    sigma_squared = float((grey / 255.0).var())
    assert metrics.texture_energy(np.dstack([grey] * 3)) == pytest.approx(20 * sigma_squared, rel=0.05)
    assert metrics.texture_energy(np.full((50, 60, 3), 90, np.uint8)) == 0.0


def test_texture_energy_falls_when_a_frame_is_blurred(painting):
    blurred = cv2.GaussianBlur(painting, (0, 0), 2.0)
    assert metrics.texture_energy(blurred) < 0.3 * metrics.texture_energy(painting)


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
    "frames", "size", "estimator", "carry_flow", "stylized", "source", "flow_floor", "ratio_to_source",
    "ratio_to_floor", "per_pair", "floor_per_pair", "source_per_pair", "coverage", "structure",
    "structure_drift", "structure_per_frame", "texture_energy_per_frame",
}


def test_evaluate_clip_against_itself_names_its_flows(source_video):
    report = evaluate_clip(source_video, source_video, "farneback", carry_flow="dis-fast")
    assert set(report) == EXPECTED_KEYS
    assert (report["estimator"], report["carry_flow"]) == ("farneback", "dis-fast")
    assert report["frames"] == FRAMES and report["size"] == [WIDTH, HEIGHT]
    assert len(report["per_pair"]) == len(report["floor_per_pair"]) == FRAMES - 1
    assert len(report["structure_per_frame"]) == len(report["texture_energy_per_frame"]) == FRAMES
    assert report["ratio_to_source"] == pytest.approx(1.0)
    assert report["structure"] == pytest.approx(1.0)
    json.dumps(report)  # JSON-ready


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
    clip = measure_clip(decoded, stylized)
    np.testing.assert_allclose(report["per_pair"], clip.stylized.per_pair, rtol=1e-6)
    np.testing.assert_allclose(report["floor_per_pair"], clip.floor.per_pair, rtol=1e-6)
    assert report["ratio_to_floor"] == pytest.approx(clip.ratio_to_floor, rel=1e-6) and clip.ratio_to_floor > 10


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


# ---------------------------------------------------------------- eval of work directories


WARM = {"flow": "dis-medium", "init": "previous-warped", "temporal_weight": 200.0, "first_frame_iterations": 100,
        "frame_iterations": 20, "content_weight": 1.0, "style_weight": 10.0}
COLD = {**WARM, "init": "content", "temporal_weight": 0.0, "frame_iterations": 100}


def write_workdir(path: Path, frames: list[np.ndarray], settings: dict, content: float, style: float,
                  evaluations: int) -> Path:
    """A work directory as a render leaves it: manifest, frames/NNNNNN.png, stats/NNNNNN.json."""
    (path / "stats").mkdir(parents=True)
    (path / "frames").mkdir()
    (path / "manifest.json").write_text(json.dumps({"identity": {"settings": settings}}))
    for index, frame in enumerate(frames):
        save_rgb(path / "frames" / f"{index:06d}.png", frame)
        stats = {"losses": {"content": content, "style": style, "temporal": 0.0, "total": content + style},
                 "evaluations": evaluations, "stop_reason": "budget", "seconds": 1.0}
        (path / "stats" / f"{index:06d}.json").write_text(json.dumps(stats))
    return path


@pytest.fixture(scope="module")
def workdirs(source, painting, tmp_path_factory):
    """A warm render that lost the content (a moving painting) and a cold one that kept it all."""
    root = tmp_path_factory.mktemp("workdirs")
    warm = write_workdir(root / "warm.work", moving(painting), WARM, content=1.0, style=0.2, evaluations=20)
    cold = write_workdir(root / "cold.work", source, COLD, content=0.5, style=0.1, evaluations=100)
    return warm, cold


def test_eval_compares_with_a_cold_baseline(source_video, workdirs):
    warm, cold = workdirs
    result = evaluate.evaluate(source_video, warm, baseline=cold)
    baseline = result["baseline"]
    assert result["warnings"] == [] and result["start"] == 0
    assert baseline["structure"] == pytest.approx(1.0)
    assert baseline["structure_ratio"] == pytest.approx(result["structure"]) and baseline["structure_ratio"] < 0.1
    # content + style, both weighted by the evaluated render's weights: (1 + 10·0.2) ÷ (0.5 + 10·0.1)
    assert baseline["content_style_ratio"] == pytest.approx(3.0 / 1.5)
    assert baseline["content_style_ratio_per_frame"] == {index: pytest.approx(2.0) for index in range(FRAMES)}
    assert baseline["evaluations_ratio"] == pytest.approx(0.2)
    printed = evaluate.format_evaluation(result)
    assert "cold baseline" in printed and "2.00x" in printed and "deepflow" in printed


def test_a_baseline_that_is_not_cold_or_lacks_frames_is_flagged(source_video, workdirs, tmp_path, source):
    warm, _ = workdirs
    result = evaluate.evaluate(source_video, warm, baseline=warm)
    assert any("not a cold render" in warning for warning in result["warnings"])
    short = write_workdir(tmp_path / "short.work", source[:3], COLD, 0.5, 0.1, 100)
    with pytest.raises(InputError, match="--init cold"):
        evaluate.evaluate(source_video, warm, baseline=short)


def test_eval_warns_when_measured_with_the_renders_own_flow(source_video, workdirs):
    warm, _ = workdirs
    flattered = evaluate.evaluate(source_video, warm, estimator="dis")
    assert flattered["estimator"] == "dis-medium" and flattered["carry_flow"] == "dis-medium"
    assert len(flattered["warnings"]) == 1 and "flatters" in flattered["warnings"][0]
    assert "\n" not in flattered["warnings"][0]
