import dataclasses
import shutil
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf

from pipeline import chain, planning, render, video
from pipeline.config import Job, make_settings, parse_style, style_blend
from pipeline.device_optimizer import loss_settled
from pipeline.errors import InputError
from pipeline.files import file_sha256
from pipeline.images import load_rgb
from pipeline.stylize import StyleImage, Stylizer, TemporalGuide, match_colour_statistics, style_image_size
from pipeline.workdir import WorkDir, identity_differences

from conftest import SAMPLE_CLIP, SAMPLE_STYLE, SAMPLE_STYLE_2

SIZE = (48, 64)  # (height, width): tiny, but above VGG16's 32-pixel minimum


@pytest.fixture(scope="module")
def content():
    painting = load_rgb(SAMPLE_STYLE)
    return cv2.resize(painting[100:500, 200:700], SIZE[::-1], interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def style():
    return cv2.resize(load_rgb(SAMPLE_STYLE), (160, 106), interpolation=cv2.INTER_AREA)


def settings(**overrides):
    return make_settings("default", {"stop_window": 0, **overrides})


def test_style_image_keeps_its_aspect_ratio():
    assert style_image_size((712, 1071), (240, 320), 1.0) == (213, 320)
    assert style_image_size((712, 1071), (240, 320), 0.5) == (106, 160)
    assert min(style_image_size((8, 8), (240, 320), 1.0)) >= 32  # tiny styles grow to VGG's minimum
    assert style_image_size((8, 8), (240, 320), 1.0) == (320, 320)


@pytest.mark.parametrize("style_shape", [(16, 16000), (16000, 16), (20, 3000)])
def test_long_thin_style_image_is_capped(style_shape):
    """VGG16's 32 px short side alone would make 16x16000 a 32x32000 image (2 GB of activations)."""
    height, width = style_image_size(style_shape, SIZE, 1.0)
    assert height * width <= 4 * SIZE[0] * SIZE[1]
    assert min(height, width) >= 32
    assert (height > width) == (style_shape[0] > style_shape[1])  # still long the same way


def test_capped_style_image_is_named_in_one_warning(vgg_weights, capsys):
    thin = np.full((16, 16000, 3), 128, np.uint8)
    Stylizer(settings(), vgg_weights, thin, SIZE, style_name="thin.png")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: thin.png: ")
    assert "16000x16" in lines[0] and "32000x32" in lines[0]


OPTIMIZERS = ["lbfgs", "scipy-lbfgs", "adam"]


@pytest.fixture(scope="module")
def stylizers(vgg_weights, style):
    """One stylizer per optimizer, made once: the device optimizers trace their loop on first use."""
    return {name: Stylizer(settings(optimizer=name, learning_rate=10.0), vgg_weights, style, SIZE) for name in OPTIMIZERS}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimization_lowers_the_loss_and_stays_in_range(stylizers, content, optimizer):
    stylizer = stylizers[optimizer]
    seen = []
    result = stylizer.stylize(content, content, budget=12, on_iterate=seen.append)
    start_loss = stylizer.evaluate(stylizer_input(content))[0]
    assert result.image.dtype == np.uint8 and result.image.shape == (*SIZE, 3)
    assert result.losses["total"] < 0.8 * start_loss
    assert result.evaluations <= 14 and result.stop_reason == "budget"
    losses = [it.loss for it in seen]
    assert [(it.evaluations, it.loss) for it in seen] == [(used, loss) for used, loss, _ in result.trace]
    if optimizer != "adam":  # a line search never accepts a rise
        assert losses == sorted(losses, reverse=True)
    else:  # Adam may overshoot; the frame kept is the best image it evaluated
        assert min(losses) < 0.8 * losses[0] and result.losses["total"] <= min(losses) + 1e-6
    assert np.abs(result.image.astype(int) - content).mean() > 1  # it actually changed the picture


def stylizer_input(rgb):
    from pipeline.vgg import to_caffe

    return to_caffe(rgb)[None]


def test_device_lbfgs_reaches_scipys_loss_within_the_same_evaluations(stylizers, content):
    """Same start, same budget: the TensorFlow L-BFGS spends exactly the budget (SciPy may overrun
    it by a line search) and ends within 1 % of the best loss SciPy had reached by then. Both
    take SciPy's first step, so they agree closely; a broken two-loop or line search would not."""
    budget = 12
    device = stylizers["lbfgs"].stylize(content, content, budget)
    scipy = stylizers["scipy-lbfgs"].stylize(content, content, budget)
    assert device.evaluations == budget and device.trace[-1][0] <= budget
    scipy_by_then = min(loss for used, loss, _ in scipy.trace if used <= budget)
    assert device.losses["total"] <= 1.01 * scipy_by_then
    assert device.losses["total"] < 0.5 * device.trace[0][1]  # and it did descend, far


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_device_optimizers_time_in_the_loss_fits_in_its_wall_time(stylizers, content, optimizer):
    """The time the device optimizer reports in evaluations is this frame's alone (the stylizer
    has rendered frames before) and less than the frame's wall time (at 256 px a clock that
    started before its image existed overlapped the iteration before: 113 % of the wall time)."""
    stylizer = stylizers[optimizer]
    began = time.perf_counter()
    result = stylizer.stylize(content, content, budget=30)
    wall = time.perf_counter() - began
    assert result.evaluations == 30
    assert 0.0 < stylizer.device_optimizer.evaluation_seconds < wall


@pytest.mark.parametrize("optimizer", ["lbfgs", "scipy-lbfgs"])
def test_early_stop_when_the_loss_settles(vgg_weights, content, style, optimizer):
    # A tolerance no iteration can meet stops after the first full window, exactly: a device
    # chunk (here 3 iterations) must carry the window into the next chunk and stop inside it.
    stylizer = Stylizer(settings(stop_window=3, stop_tolerance=1e6, optimizer=optimizer), vgg_weights, style, SIZE)
    result = stylizer.stylize(content, content, budget=50)
    assert result.stop_reason == "converged"
    assert result.evaluations < 20
    assert len(result.trace) == 4


def test_calls_of_one_iteration_render_what_whole_windows_do(vgg_weights, content, style, monkeypatch):
    """The device loop's calls are cut to about CALL_SECONDS each, so a stop never waits long for
    the call in flight; how many iterations a call makes must not change the frame."""
    from pipeline import device_optimizer

    def render(call_seconds: float) -> tuple:
        monkeypatch.setattr(device_optimizer, "CALL_SECONDS", call_seconds)
        stylizer = Stylizer(settings(stop_window=4, optimizer="lbfgs"), vgg_weights, style, SIZE)
        calls = []
        run = stylizer.device_optimizer.run
        monkeypatch.setattr(stylizer.device_optimizer, "run", lambda *a: calls.append(a) or run(*a))
        return stylizer.stylize(content, content, budget=14), len(calls)

    (windows, calls_of_windows), (singles, calls_of_singles) = render(1e9), render(0.0)
    assert calls_of_singles > calls_of_windows + 4
    assert np.array_equal(windows.levels, singles.levels) and windows.trace == singles.trace


@pytest.mark.parametrize("on_device", [False, True])
def test_the_early_stop_rule_on_host_and_device(on_device):
    # Host (floats) and device (float64 tensors) share the rule.
    value = (lambda x: tf.constant(x, tf.float64)) if on_device else float
    assert bool(loss_settled(value(10.0), value(9.999), 0.001))  # fell, by less than the tolerance
    assert not bool(loss_settled(value(10.0), value(9.0), 0.001))  # fell by more
    assert bool(loss_settled(value(10.0), value(10.5), 0.001))  # rose: no progress either
    assert not bool(loss_settled(value(float("nan")), value(9.0), 0.001))  # no loss a window back


def only_temporal_settings(**overrides):
    return settings(**{"content_weight": 0.0, "style_weight": 0.0, "tv_weight": 0.0, "temporal_weight": 1.0,
                       "optimizer": "lbfgs", **overrides})


@pytest.fixture(scope="module")
def only_temporal(vgg_weights, style):
    return Stylizer(only_temporal_settings(), vgg_weights, style, SIZE)


def test_temporal_loss_reaches_the_image_and_spares_masked_pixels(only_temporal, content):
    """With only the temporal term, reliable pixels move to the warped frame and masked ones don't move."""
    stylizer = only_temporal
    warped = np.full((*SIZE, 3), 200, np.uint8)
    reliability = np.zeros(SIZE, np.float32)
    reliability[:, : SIZE[1] // 2] = 1.0
    result = stylizer.stylize(content, content, budget=20, guide=TemporalGuide(warped, reliability))
    left, right = result.image[:, : SIZE[1] // 2].astype(int), result.image[:, SIZE[1] // 2 :]
    assert np.abs(left - 200).max() <= 2
    np.testing.assert_array_equal(right, content[:, SIZE[1] // 2 :])


def out_of_range_guide():
    """A warped frame pulling a third of the pixels past white and a third past black."""
    warped = np.tile(np.linspace(-150, 400, SIZE[1], dtype=np.float32)[None, :, None], (SIZE[0], 1, 3))
    return TemporalGuide(warped, np.ones(SIZE, np.float32))


def caffe_bounds():
    from pipeline.vgg import PIXEL_MAX, PIXEL_MIN

    return PIXEL_MIN, PIXEL_MAX


def test_device_lbfgs_projects_onto_the_pixel_box(only_temporal, content):
    """The optimum of (x − ω)² inside the box is ω clipped to it: pixels pulled outside end exactly
    on the bound (in Caffe space, before any rounding), the others on ω; none ever leaves the box."""
    from pipeline.vgg import to_caffe

    guide = out_of_range_guide()
    result = only_temporal.stylize(content, content, budget=10, guide=guide)
    best = only_temporal.device_optimizer.best_image()[0]
    low, high = caffe_bounds()
    assert (best >= low).all() and (best <= high).all()
    optimum = np.clip(to_caffe(guide.warped), low, high)
    np.testing.assert_allclose(best, optimum, atol=0.5)
    assert (best == low).sum() > 0.2 * best.size and (best == high).sum() > 0.2 * best.size
    assert result.evaluations == 10
    assert result.losses["total"] == pytest.approx(only_temporal.evaluate(optimum[None])[0], rel=1e-3)


def test_device_adam_keeps_its_best_image_and_the_box(vgg_weights, content, style):
    """Pulled 100 levels up (past white where the content is light), with steps of ~60 levels
    Adam overshoots and the loss rises again: the frame returned is still the best image
    evaluated, in the box, and every evaluation is counted."""
    stylizer = Stylizer(only_temporal_settings(optimizer="adam", learning_rate=60.0), vgg_weights, style, SIZE)
    guide = TemporalGuide(content.astype(np.float32) + 100, np.ones(SIZE, np.float32))
    result = stylizer.stylize(content, content, budget=8, guide=guide)
    losses = [loss for _, loss, _ in result.trace]
    assert result.evaluations == 8 and len(losses) == 8
    assert min(losses) < 0.8 * losses[0]
    assert losses[-1] > min(losses)  # it did overshoot, so the last image is not the best
    assert result.losses["total"] == pytest.approx(min(losses))
    best = stylizer.device_optimizer.best_image()
    low, high = caffe_bounds()
    assert (best >= low).all() and (best <= high).all() and (best == high).any()
    assert stylizer.evaluate(best)[0] == pytest.approx(min(losses), rel=1e-5)


def test_temporal_weight_zero_ignores_the_guide(vgg_weights, content, style):
    no_temporal = settings(content_weight=0.0, style_weight=0.0, tv_weight=0.0, temporal_weight=0.0)
    stylizer = Stylizer(dataclasses.replace(no_temporal), vgg_weights, style, SIZE)
    guide = TemporalGuide(np.full((*SIZE, 3), 200, np.uint8), np.ones(SIZE, np.float32))
    result = stylizer.stylize(content, content, budget=3, guide=guide)
    assert result.losses["temporal"] == 0.0


# ---------------------------------------------------------------- an artist's controls


def chroma(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)


def luma(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0].astype(int)


def test_keep_colors_luminance_keeps_the_source_chroma_and_stylizes_the_luminance(vgg_weights, content, style):
    plain = Stylizer(settings(), vgg_weights, style, SIZE).stylize(content, content, budget=8).image
    kept = Stylizer(settings(keep_colors="luminance"), vgg_weights, style, SIZE).stylize(content, content, budget=8).image
    unclipped = ((kept > 0) & (kept < 255)).all(axis=-1)  # where Y + the source's chroma lies inside RGB
    assert unclipped.mean() > 0.9
    assert np.abs(chroma(kept) - chroma(content))[unclipped].max() <= 1
    assert np.abs(chroma(plain) - chroma(content)).mean() > 3  # without it the style's colours come in
    np.testing.assert_allclose(luma(kept), luma(plain), atol=1)  # the stylized luminance, where unclipped
    assert np.abs(luma(kept) - luma(content)).mean() > 2


@pytest.fixture(scope="module")
def clip_frame():
    info = video.probe(SAMPLE_CLIP)
    return next(iter(video.read_frames(info, 0, 1, SIZE[::-1])))


def test_histogram_matching_gives_the_style_the_contents_mean_and_covariance(clip_frame, style):
    # The map matches exactly; only the clip to 0-255 bends it, so the frame is dimmed to keep the
    # recoloured painting inside RGB (the sample frame itself has clipped whites).
    reference = np.rint(clip_frame * 0.7 + 10).astype(np.uint8)
    matched = match_colour_statistics(style, reference).reshape(-1, 3).astype(np.float64)
    target = reference.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(matched.mean(axis=0), target.mean(axis=0), atol=2.0)
    covariance, wanted = np.cov(matched, rowvar=False), np.cov(target, rowvar=False)
    assert np.linalg.norm(covariance - wanted) < 0.05 * np.linalg.norm(wanted)
    before = np.cov(style.reshape(-1, 3).astype(np.float64), rowvar=False)
    assert np.linalg.norm(before - wanted) > 0.2 * np.linalg.norm(wanted)  # it had other colours


def test_keep_colors_histogram_takes_its_targets_from_the_recoloured_style(vgg_weights, clip_frame, style):
    histogram = Stylizer(settings(keep_colors="histogram"), vgg_weights, style, SIZE, colour_reference=clip_frame)
    recoloured = Stylizer(settings(), vgg_weights, match_colour_statistics(style, clip_frame), SIZE)
    plain = Stylizer(settings(), vgg_weights, style, SIZE)
    for name, gram in histogram.style_grams.items():
        np.testing.assert_allclose(gram.numpy(), recoloured.style_grams[name].numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(gram.numpy(), plain.style_grams[name].numpy(), rtol=1e-2)


@pytest.fixture(scope="module")
def second_style():
    return cv2.resize(load_rgb(SAMPLE_STYLE_2), (120, 96), interpolation=cv2.INTER_AREA)


def test_a_blends_gram_targets_are_the_weighted_mean_of_its_paintings(vgg_weights, style, second_style):
    first = Stylizer(settings(), vgg_weights, style, SIZE).style_grams
    second = Stylizer(settings(), vgg_weights, second_style, SIZE).style_grams
    blend = Stylizer(settings(), vgg_weights, [StyleImage(style, 0.7), StyleImage(second_style, 0.3)], SIZE).style_grams
    for name in first:
        expected = 0.7 * first[name].numpy() + 0.3 * second[name].numpy()
        np.testing.assert_allclose(blend[name].numpy(), expected, rtol=1e-5, atol=1e-7)


def small_job(tmp_path, style, **overrides):
    return Job(video=SAMPLE_CLIP, style=style, settings=settings(size=64, **overrides), output=tmp_path / "out.mp4")


def test_a_blend_weighted_one_and_zero_renders_the_single_style(tmp_path):
    single = small_job(tmp_path, SAMPLE_STYLE)
    blend = small_job(tmp_path, style_blend([parse_style(f"{SAMPLE_STYLE}:1"), parse_style(f"{SAMPLE_STYLE_2}:0")]))
    job_plan = planning.plan(single)
    expected = chain.stylizer_for(single, job_plan).style_grams
    got = chain.stylizer_for(blend, job_plan).style_grams
    for name in expected:
        np.testing.assert_array_equal(got[name].numpy(), expected[name].numpy())


def test_the_identity_holds_every_styles_content_and_weight(tmp_path):
    blend = small_job(tmp_path, style_blend([parse_style(f"{SAMPLE_STYLE}:0.7"), parse_style(f"{SAMPLE_STYLE_2}:0.3")]))
    other = small_job(tmp_path, style_blend([parse_style(f"{SAMPLE_STYLE}:0.6"), parse_style(f"{SAMPLE_STYLE_2}:0.4")]))
    identity = planning.style_identity(blend)
    assert [s["weight"] for s in identity["blend"]] == [0.7, 0.3]
    assert [s["sha256"] for s in identity["blend"]] == [file_sha256(SAMPLE_STYLE), file_sha256(SAMPLE_STYLE_2)]
    differences = identity_differences({"style": identity}, {"style": planning.style_identity(other)})
    assert len(differences) == 1 and str(differences[0]).startswith("style.blend ") and "0.6" in str(differences[0])
    # one painting keeps the identity work directories had before blends, so they still resume
    assert planning.style_identity(small_job(tmp_path, SAMPLE_STYLE)) == {"sha256": file_sha256(SAMPLE_STYLE)}
    # keep_colors is in the identity when on, and out of it when off (as renders before it)
    assert "keep_colors" not in settings().frame_settings()
    assert settings(keep_colors="luminance").frame_settings()["keep_colors"] == "luminance"


def test_no_output_may_replace_any_style_of_a_blend(tmp_path):
    second = tmp_path / "second.jpg"
    shutil.copy(SAMPLE_STYLE_2, second)
    job = dataclasses.replace(small_job(tmp_path, style_blend([SAMPLE_STYLE, second])), output=second)
    with pytest.raises(InputError, match="second.jpg"):
        planning.check_outputs(job, planning.plan(job))


def test_luminance_chroma_follows_each_source_frame_through_a_chain(tmp_path):
    """Stored (encoded) frames carry their own source frame's chroma, frame after frame."""
    job = dataclasses.replace(small_job(tmp_path, SAMPLE_STYLE, keep_colors="luminance", first_frame_iterations=3,
                                        frame_iterations=2), end=3)
    render.render(job)
    job_plan = planning.plan(job)
    work = WorkDir(job.workdir_path)
    for index, source in zip(range(3), video.read_frames(job_plan.info, 0, 3, job_plan.size)):
        frame = work.load(index)
        unclipped = ((frame > 0) & (frame < 255)).all(axis=-1)
        assert unclipped.mean() > 0.9
        assert np.abs(chroma(frame) - chroma(source))[unclipped].max() <= 1, index


def test_coarse_shapes_halve_down_to_vggs_minimum_side():
    from pipeline.stylize import coarse_shapes

    assert coarse_shapes((288, 512), 2) == [(72, 128), (144, 256)]
    assert coarse_shapes((72, 96), 2) == [(36, 48)]  # 18x24 would be under 32 pixels
    assert coarse_shapes((72, 96), 0) == []


def test_a_cold_frame_goes_through_its_coarse_sizes_first(vgg_weights, content, style):
    """SIZE is 48x64: one coarser size would be 24x32, under VGG's minimum, so a 96x128 frame is
    used; its coarse level (48x64) gets its own stylizer, made once, and its evaluations are recorded."""
    frame = cv2.resize(content, (128, 96), interpolation=cv2.INTER_AREA)
    stylizer = Stylizer(settings(coarse_levels=1, coarse_iterations=5, first_frame_iterations=3), vgg_weights, style, (96, 128))
    result = stylizer.stylize_cold(frame)
    assert result.image.shape == (96, 128, 3) and result.evaluations <= 4
    assert 1 <= result.coarse_evaluations <= 6
    assert list(stylizer._at_size) == [(48, 64)] and stylizer.at_size((48, 64)) is stylizer._at_size[(48, 64)]
    plain = Stylizer(settings(coarse_levels=0, first_frame_iterations=3), vgg_weights, style, (96, 128)).stylize_cold(frame)
    assert plain.coarse_evaluations == 0 and not np.array_equal(plain.image, result.image)
