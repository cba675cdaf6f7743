"""Stitching chunk borders: the two-target temporal guide, the stitch's frames, and the farm task."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

import cli
from pipeline import flow, losses, metrics, stitch
from pipeline.images import load_rgb
from pipeline.stitch import Border, border_at, border_between
from pipeline.stylize import FrameResult, TemporalGuide, combine_guides
from pipeline.workdir import WorkDir

from conftest import SAMPLE_CLIP, SAMPLE_STYLE

TINY = ["--size", "64", "--first-frame-iterations", "3", "--frame-iterations", "8", "--quiet"]
CHUNKS = ["--chunk-size", "3", "--overlap", "2"]


def run(*args):
    return cli.main([str(a) for a in args])


def test_combined_guides_pull_as_their_sum():
    """Two weighted targets folded into one guide: the loss differs by a constant, the gradient not at all."""
    rng = np.random.default_rng(0)
    shape = (6, 5)
    guides = [TemporalGuide(rng.uniform(0, 255, (*shape, 3)).astype(np.float32),
                            (rng.uniform(size=shape) > 0.3).astype(np.float32), weight) for weight in (0.25, 0.75)]
    combined = combine_guides(*guides)

    def loss_and_gradient(image, guide_list):
        image = tf.constant(image[None])
        with tf.GradientTape() as tape:
            tape.watch(image)
            loss = tf.add_n([losses.temporal_loss(image, g.warped[None], (g.weight * g.reliability)[None, ..., None])
                             for g in guide_list])
        return float(loss), tape.gradient(loss, image).numpy()

    differences = []
    for _ in range(2):
        image = rng.uniform(0, 255, (*shape, 3)).astype(np.float32)
        separate, separate_gradient = loss_and_gradient(image, guides)
        together, together_gradient = loss_and_gradient(image, [combined])
        np.testing.assert_allclose(together_gradient, separate_gradient, rtol=1e-4, atol=1e-9)
        differences.append(separate - together)
    assert differences[0] == pytest.approx(differences[1], rel=1e-4)
    # Where only one guide is reliable, the target is that guide's frame.
    only_first = (guides[0].reliability > 0) & (guides[1].reliability == 0)
    np.testing.assert_allclose(combined.warped[only_first], guides[0].warped[only_first])


def test_a_guide_weight_scales_its_temporal_term(vgg_weights):
    from pipeline.config import make_settings
    from pipeline.stylize import Stylizer
    from pipeline.vgg import to_caffe

    size = (40, 48)
    frame = np.full((*size, 3), 90, np.uint8)
    stylizer = Stylizer(make_settings("default"), vgg_weights, load_rgb(SAMPLE_STYLE)[:200, :200], size)
    warped, reliable = np.full((*size, 3), 200, np.uint8), np.ones(size, np.float32)
    temporal = []
    for weight in (1.0, 0.5):
        stylizer._set_targets(frame, TemporalGuide(warped, reliable, weight))
        temporal.append(stylizer.evaluate(to_caffe(frame)[None])[1]["temporal"])
    assert temporal[0] > 0 and temporal[1] == pytest.approx(temporal[0] / 2, rel=1e-5)


def test_a_border_stitches_the_later_chunks_warm_up_within_the_earlier_chunk():
    assert border_between(0, 12, 6).frames == range(6, 12)
    assert border_between(0, 12, 12).frames == range(1, 12)  # the earlier chunk's first frame is where it starts
    assert border_between(10, 12, 6).frames == range(11, 12)
    assert not border_between(11, 12, 6).frames  # a one-frame chunk before: nothing to stitch
    border = Border(12, 6)
    pulls = [border.pull(i, border.progress(i - 1) if i > border.begin else 0.0) for i in border.frames]
    assert pulls == sorted(pulls) and 0 < pulls[0] < 0.2 and pulls[-1] < 1


def test_no_stitch_only_where_the_later_chain_repeats_the_earlier_one(tmp_path):
    """A warm-up from the range's first frame is skipped only if its frames are the earlier
    chain's, byte for byte (a farm task); batched beside it (`chains`) they are not."""
    work = WorkDir(tmp_path)
    later = work.warmup(6)
    for folder in (work.path, later.path):
        (folder / "frames").mkdir(parents=True)
        (folder / "stats").mkdir()

    def frame(value):
        return FrameResult(np.full((8, 8, 3), value, np.float32), {}, 1, "budget")

    for index in range(6):
        work.save(index, frame(index))
        later.save(index, frame(index))
    assert not border_at(work, 0, 6, 6).frames  # the same chain: nothing to cross
    assert border_at(work, 0, 6, 5).frames == range(1, 6)  # a warm-up after the range's first frame: stitched
    later.save(3, frame(100))  # the later chain set apart (by rounding, with --chains)
    assert border_at(work, 0, 6, 6).frames == range(1, 6)
    later.save(3, frame(3))
    later.discard_frame(5)  # not rendered yet: stitched, so the stitch waits for it
    assert border_at(work, 0, 6, 6).frames == range(1, 6)


def test_the_pulls_take_equal_steps_from_the_earlier_chain_to_the_later():
    """Each stitched frame's forward target is the previous stitched frame, already part of the
    way over: the pulls compound and land at equal steps, 1/(n+2-k) each when every frame lands
    where it is meant to."""
    for border in (Border(12, 6), Border(24, 13), Border(3, 2)):
        done, steps = 0.0, []
        for k, index in enumerate(border.frames, 1):
            pull = border.pull(index, done)
            assert pull == pytest.approx(1 / (len(border.frames) + 2 - k))
            steps.append((1 - pull) * done + pull - done)
            done += steps[-1]
            assert done == pytest.approx(border.progress(index))
        steps.append(1.0 - done)  # into the later chunk's first own frame
        assert steps == pytest.approx([1 / (len(border.frames) + 1)] * (len(border.frames) + 1))


def test_a_frame_that_lands_short_is_made_up_by_the_next():
    border = Border(24, 13)
    short = border.progress(17) - 0.03
    pull = border.pull(18, short)
    assert pull > border.pull(18, border.progress(17))
    assert (1 - pull) * short + pull == pytest.approx(border.progress(18))
    assert border.pull(18, 0.99) == 0.0 and border.pull(18, 1.0) == 1.0  # never pushed back, nothing to cross


def test_progress_places_a_frame_between_the_two_chains():
    rng = np.random.default_rng(3)
    earlier, later = rng.uniform(0, 255, (2, 8, 8, 3))
    assert stitch.progress(earlier, earlier, later) == pytest.approx(0.0)
    assert stitch.progress(later, earlier, later) == pytest.approx(1.0)
    assert stitch.progress(0.7 * earlier + 0.3 * later, earlier, later) == pytest.approx(0.3)


def test_where_the_forward_flow_fails_the_stitch_target_keeps_its_step():
    """A pixel the forward warp cannot follow keeps the pull-weighted mix of both chains as its
    target instead of jumping wholly to the later chain; it is pulled only by the reliable warp."""
    earlier, later = np.full((4, 4, 3), 100.0, np.float32), np.full((4, 4, 3), 200.0, np.float32)
    unreliable = np.ones((4, 4), np.float32)
    unreliable[0, 0] = 0.0
    guide = stitch.pulled_between(TemporalGuide(earlier, unreliable, 0.75), TemporalGuide(later, np.ones((4, 4), np.float32), 0.25))
    np.testing.assert_allclose(guide.warped, 125.0)
    assert guide.reliability[0, 0] == pytest.approx(0.25) and guide.reliability[1, 1] == pytest.approx(1.0)


def test_in_a_pan_the_stitch_target_takes_the_strip_entering_the_view_from_the_frame_that_saw_it():
    """The view moves right 3 px a frame: the current frame's right columns lie outside the frame
    before (its warp can only smear its last column there) and inside the frame after."""
    def panned(image, x):  # the view's left edge at x
        return cv2.warpAffine(image, np.float32([[1, 0, x], [0, 1, 0]]), (128, 96), flags=cv2.WARP_INVERSE_MAP)
    photo = cv2.resize(load_rgb(SAMPLE_STYLE.parent / "kandinsky.jpg"), (160, 96))
    painting = cv2.resize(load_rgb(SAMPLE_STYLE), (160, 96))
    sources, painted = [panned(photo, x) for x in (10, 13, 16)], [panned(painting, x) for x in (10, 13, 16)]
    forward_flows, backward_flows = (flow.flows_between(sources[k], sources[1]) for k in (0, 2))
    forward = TemporalGuide(*flow.temporal_guide(sources[0], sources[1], painted[0], flows=forward_flows), 0.5)
    backward = TemporalGuide(*flow.temporal_guide(sources[2], sources[1], painted[2], flows=backward_flows), 0.5)
    forward_outside, backward_outside = flow.entering_view(forward_flows[0]), flow.entering_view(backward_flows[0])
    assert forward_outside[8:-8, -2:].all() and backward_outside[8:-8, :2].all()
    target = stitch.pulled_between(*stitch.each_where_the_other_saw(forward, backward, forward_outside,
                                                                    backward_outside)).warped
    streaked = stitch.pulled_between(forward, backward).warped

    def error(image, columns):
        return np.abs(image[8:-8, columns].astype(np.float32) - painted[1][8:-8, columns]).mean()
    for columns in (slice(-3, None), slice(0, 3)):  # the strip entering the view, and the one leaving it
        assert error(target, columns) < 0.5 * error(streaked, columns)
        assert error(target, columns) < 2 * error(target, slice(8, -8)) + 4  # as close as the frame's inside


def test_the_stitch_target_between_two_stroke_layouts_keeps_their_contrast():
    """Halfway between two chains whose strokes lie in different places, the target is not a
    double exposure at half the detail energy: its detail keeps the energy of either chain's,
    and where the chains agree it is their frame unchanged."""
    rng = np.random.default_rng(0)
    grey = np.full((64, 64, 3), 128.0, np.float32)
    strokes = [grey + cv2.GaussianBlur(rng.normal(0, 40, (64, 64, 3)).astype(np.float32), (0, 0), 0.7) for _ in range(2)]
    reliable = np.ones((64, 64), np.float32)

    def detail_energy(image):  # what the seam benchmark measures: texture energy, the Laplacian's variance
        return metrics.texture_energy(np.clip(image, 0, 255).astype(np.uint8))
    target = stitch.pulled_between(TemporalGuide(strokes[0], reliable, 0.5), TemporalGuide(strokes[1], reliable, 0.5)).warped
    plain_mean = 0.5 * (strokes[0] + strokes[1])
    either = np.mean([detail_energy(s) for s in strokes])
    assert detail_energy(plain_mean) < 0.6 * either  # the ghost the stitch avoids
    assert 0.85 * either < detail_energy(target) < 1.15 * either
    np.testing.assert_allclose(target.mean(axis=(0, 1)), plain_mean.mean(axis=(0, 1)), atol=1.0)  # same broad colours
    same = stitch.pulled_between(TemporalGuide(strokes[0], reliable, 0.3), TemporalGuide(strokes[0], reliable, 0.7)).warped
    np.testing.assert_allclose(same, np.clip(strokes[0], 0, 255), atol=1e-3)


def blend_residual(frame, earlier, later) -> float:
    """RMS distance of `frame` from the best linear blend of the two chains' frames."""
    a, b, f = (x.astype(np.float64).ravel() for x in (earlier, later, frame))
    direction = b - a
    weight = np.clip(direction @ (f - a) / (direction @ direction), 0, 1)
    return float(np.sqrt(np.mean((f - a - weight * direction) ** 2)))


def test_stitch_waits_for_both_neighbours_is_idempotent_and_is_what_assembly_encodes(tmp_path, capsys, monkeypatch):
    # The border at 6: the chunk before it starts at 3, after the range's first frame, so the two
    # chains differ (at 3 the later chain's warm-up would continue frame 0 as the earlier one does).
    output, work = tmp_path / "farm.mp4", tmp_path / "farm.work"
    common = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 9, *TINY, *CHUNKS]
    assert run(*common, "--frames", "0-2") == 0
    assert run(*common, "--frames", "3-5") == 0
    assert run(*common, "--stitch", 6) == 2  # the later chunk is missing: refused, one line
    err = capsys.readouterr().err
    assert "cannot stitch the border at frame 6 yet: frame(s) 6 and warm-up frame(s) 4, 5" in err
    assert not (work / "stitched" / "000006").exists()
    assert run(*common, "--frames", "6-8") == 0
    assert run(*common, "--stitch", 6) == 0
    stitched = work / "stitched" / "000006" / "frames"
    assert sorted(p.name for p in stitched.iterdir()) == ["000004.png", "000005.png"]
    files = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file() and p.name != ".lock"}
    assert run(*common, "--stitch", 6) == 0  # a retried farm task changes nothing
    assert {p: p.stat().st_mtime_ns for p in files} == files

    (stitched / "000005.png").unlink()  # a task killed before its last frame: resumes there
    assert run(*common, "--stitch", 6) == 0
    assert (stitched / "000005.png").stat().st_mtime_ns > files[stitched / "000005.png"]
    assert (stitched / "000004.png").stat().st_mtime_ns == files[stitched / "000004.png"]

    resumed = {p: p.stat().st_mtime_ns for p in stitched.iterdir()}
    monkeypatch.setattr(stitch, "STITCH_METHOD", "a later method")  # frames stitched the old way: again
    assert run(*common, "--stitch", 6) == 0
    assert all(p.stat().st_mtime_ns > mtime for p, mtime in resumed.items())

    assert run(*common, "--assemble") == 0
    for index in (4, 5):
        final = load_rgb(work / "final" / f"{index:06d}.png")
        np.testing.assert_array_equal(final, load_rgb(stitched / f"{index:06d}.png"))
        earlier, later = load_rgb(work / "frames" / f"{index:06d}.png"), load_rgb(work / "warmup" / "000006" / "frames" / f"{index:06d}.png")
        assert blend_residual(final, earlier, later) > 1.0  # a frame of its own, not a cross-fade
        # As much detail as the two chains' own frames: no double exposure. (At 64 px and a few
        # evaluations a cross-fade loses little; benchmarks/seams.py measures it properly.)
        chains = np.mean([metrics.texture_energy(earlier), metrics.texture_energy(later)])
        assert metrics.texture_energy(final) >= 0.9 * chains
    np.testing.assert_array_equal(load_rgb(work / "final" / "000006.png"), load_rgb(work / "frames" / "000006.png"))
