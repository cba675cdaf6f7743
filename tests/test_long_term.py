"""The chain's memory: the long-term temporal guide, the frames it draws on, and scene cuts.

No VGG here: a stub stylizer records what each frame is asked to do."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pipeline import chain, detail, flow
from pipeline.config import Job, make_settings
from pipeline.errors import InputError
from pipeline.chain import Previous, history_reach, is_scene_cut, stylize_frame
from pipeline.stylize import FrameResult, TemporalGuide, long_term_guide

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WIDTH, HEIGHT = 128, 96


def picture(name: str = "kandinsky.jpg") -> np.ndarray:
    bgr = cv2.resize(cv2.imread(str(SAMPLES / name)), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def shifted(image: np.ndarray, dx: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class StubStylizer:
    """Records each call; returns the start image as the stylized frame."""

    def __init__(self):
        self.calls = []

    def stylize(self, content, start, budget, guide=None, on_iterate=None):
        self.calls.append(SimpleNamespace(content=content, start=start, budget=budget, guide=guide))
        return FrameResult(np.asarray(start, np.uint8), {"total": 0.0}, budget, "budget")

    def stylize_cold(self, content, on_iterate=None):
        """A cold start as the chain sees it: from the content, no guide, the first-frame budget."""
        return self.stylize(content, content, job().settings.first_frame_iterations)


def job(**overrides) -> Job:
    return Job(Path("clip.mp4"), Path("style.jpg"), make_settings("default", overrides))


def guide(value: float, reliability: np.ndarray) -> TemporalGuide:
    return TemporalGuide(np.full((*reliability.shape, 3), value, np.float32), reliability.astype(np.float32))


# ---------------------------------------------------------------- long-term guide


def test_farther_frame_pulls_only_where_no_nearer_one_is_reliable():
    near = np.zeros((4, 4)); near[:, :2] = 1  # the previous frame sees the left half
    far = np.ones((4, 4)); far[3] = 0  # two frames back saw all but the bottom row
    combined = long_term_guide([guide(10, near), guide(200, far)])
    # Left half: the previous frame alone (the farther frame adds no pull there).
    assert np.all(combined.reliability[:, :2] == 1) and np.all(combined.warped[:, :2] == 10)
    # Right half, rows 0-2: only the farther frame sees it, and holds it to its own pixels.
    assert np.all(combined.reliability[:3, 2:] == 1) and np.all(combined.warped[:3, 2:] == 200)
    # Seen by neither: no pull, and the nearest warp (not a blend of both) as the start.
    assert np.all(combined.reliability[3, 2:] == 0) and np.all(combined.warped[3, 2:] == 10)


def test_three_distances_each_take_what_nearer_ones_leave():
    first = np.array([[1, 0, 0, 0]]); second = np.array([[1, 1, 0, 0]]); fourth = np.array([[1, 1, 1, 0]])
    combined = long_term_guide([guide(1, first), guide(2, second), guide(4, fourth)])
    assert combined.reliability.tolist() == [[1, 1, 1, 0]]  # never more than one pull per pixel
    assert combined.warped[..., 0].tolist() == [[1, 2, 4, 1]]


def test_a_single_guide_is_unchanged():
    reliability = (np.arange(12).reshape(3, 4) % 2).astype(np.float32)
    alone = guide(7, reliability)
    combined = long_term_guide([alone])
    assert np.array_equal(combined.reliability, alone.reliability) and np.array_equal(combined.warped, alone.warped)


def test_history_reaches_back_by_powers_of_two():
    assert [history_reach(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]


# ---------------------------------------------------------------- scene cuts


def test_scene_cut_threshold():
    assert is_scene_cut(0.05, 0.3) and not is_scene_cut(0.6, 0.3) and not is_scene_cut(0.0, 0.0)


def test_a_scene_cut_starts_the_frame_cold():
    before = picture()
    after_cut = np.ascontiguousarray(picture("starry-night.jpg")[::-1])  # another shot altogether
    stylizer = StubStylizer()
    result = stylize_frame(job(), stylizer, after_cut, [Previous(before, before, None)], None)
    call = stylizer.calls[-1]
    assert result.start.startswith("cold: scene cut")
    assert call.budget == job().settings.first_frame_iterations and call.guide is None
    assert np.array_equal(call.start, after_cut)  # from the content, nothing warped across the cut


def test_the_same_shot_moving_stays_warm():
    before, now = picture(), shifted(picture(), 2.0)
    stylizer = StubStylizer()
    result = stylize_frame(job(), stylizer, now, [Previous(before, before, None)], None)
    call = stylizer.calls[-1]
    assert result.start == "warm" and call.budget == job().settings.frame_iterations
    assert call.guide is not None and call.guide.reliability.mean() > 0.5


def test_init_cold_starts_every_frame_like_the_first():
    """The per-frame baseline: no warm start, no temporal loss, the first-frame budget."""
    before, now = picture(), shifted(picture(), 2.0)
    stylizer = StubStylizer()
    result = stylize_frame(job(init="cold"), stylizer, now, [Previous(before, before, None)], None)
    call = stylizer.calls[-1]
    assert result.start == "cold" and call.guide is None and np.array_equal(call.start, now)
    assert call.budget == job().settings.first_frame_iterations


def test_scene_cut_zero_never_restarts():
    before = picture()
    after_cut = np.ascontiguousarray(picture("starry-night.jpg")[::-1])
    stylizer = StubStylizer()
    result = stylize_frame(job(scene_cut=0.0), stylizer, after_cut, [Previous(before, before, None)], None)
    assert result.start == "warm"


def test_a_frame_across_a_cut_adds_no_long_term_pull():
    """Frame t-1 is of this shot, t-2 of another: the guide is the previous frame's alone."""
    other = np.ascontiguousarray(picture("starry-night.jpg")[::-1])
    now, previous = shifted(picture(), 2.0), picture()
    history = [Previous(previous, previous, None), Previous(other, other, None)]
    with_cut, alone = StubStylizer(), StubStylizer()
    stylize_frame(job(temporal_frames=2), with_cut, now, history, None)
    stylize_frame(job(temporal_frames=1), alone, now, history[:1], None)
    assert np.array_equal(with_cut.calls[-1].guide.reliability, alone.calls[-1].guide.reliability)


@pytest.mark.parametrize("overrides", [{"temporal_frames": 0}, {"scene_cut": 1.5}])
def test_settings_out_of_range_are_refused(overrides):
    with pytest.raises(InputError):
        make_settings("default", overrides)


# ---------------------------------------------------------------- the frames behind each frame


class FinishedFrames:
    """A work directory holding `done` frames, each stylized frame a constant image of its index."""

    def __init__(self, done):
        self.done = set(done)

    def has(self, index):
        return index in self.done

    def load(self, index):
        return np.full((2, 2, 3), index, np.uint8)

    def checksum(self, index):
        return f"sum{index}"


@pytest.fixture
def numbered_sources(monkeypatch):
    def read_frames(info, start, end, size):
        return (np.full((2, 2, 3), 100 + i, np.uint8) for i in range(start, end))
    monkeypatch.setattr(chain.video, "read_frames", read_frames)
    return SimpleNamespace(info=None, size=(2, 2))


def histories(plan, work, first, last, earliest, reach):
    """The stylized frames (by index) behind each rendered frame; each is finished once yielded."""
    seen = {}
    for index, _, history in chain._frames_with_history(plan, work, first, last, earliest, reach):
        seen[index] = [int(p.stylized[0, 0, 0]) for p in history]
        work.done.add(index)
    return seen


def test_history_is_nearest_first_and_reaches_back_to_resume(numbered_sources):
    work = FinishedFrames(range(0, 6))  # frames 0-5 finished; the chain resumes at 6
    assert histories(numbered_sources, work, 6, 9, 0, 4) == {6: [5, 4, 3, 2], 7: [6, 5, 4, 3], 8: [7, 6, 5, 4]}


def test_history_stops_at_the_chunk_start_and_at_gaps(numbered_sources):
    work = FinishedFrames([0, 1, 3, 4, 5])  # frame 2 missing
    assert histories(numbered_sources, work, 6, 7, 0, 8)[6] == [5, 4, 3]
    assert histories(numbered_sources, work, 6, 7, 4, 8)[6] == [5, 4]  # a farm chunk starting at 4
    assert histories(numbered_sources, work, 6, 7, 6, 8)[6] == []  # a chunk's own first frame: cold


# ---------------------------------------------------------------- init modes and the temporal wiring


@pytest.mark.parametrize("init", ["content", "previous", "previous-warped"])
def test_each_init_mode_starts_a_warm_frame_from_its_image_with_the_warped_guide(init):
    before = picture()
    stylized_before = np.ascontiguousarray(picture("starry-night.jpg"))  # what the chain made of `before`
    now = shifted(before, 2.0)
    stylizer = StubStylizer()
    stylize_frame(job(init=init, temporal_frames=1), stylizer, now, [Previous(before, stylized_before, None)], None)
    call = stylizer.calls[-1]
    carried = shifted(stylized_before, 2.0)  # the stylized frame moved as the content did
    inner = (slice(8, -8), slice(8, -8))  # away from the borders the flow cannot see past
    # The temporal target is always the previous stylized frame carried along the flow ...
    assert np.abs(call.guide.warped[inner] - carried[inner]).mean() < 6
    assert call.guide.reliability[inner].mean() > 0.9
    # ... while the start image is what `init` names ...
    expected_start = {"content": now, "previous": stylized_before, "previous-warped": call.guide.warped}[init]
    if init == "previous-warped":  # ... but the columns the view moved onto start from the source
        entering = flow.entering_view(flow.optical_flow(now, before))
        assert entering[8:-8, :2].all() and not entering[:, 4:].any()
        expected_start = chain._carried_start(call.guide.warped, now, entering)
    assert np.array_equal(np.asarray(call.start), np.asarray(expected_start))


def test_ground_the_previous_frame_did_not_show_but_an_earlier_one_did_starts_from_that_frame():
    earliest = picture()
    before = shifted(earliest, 3.0)  # the view moved left: columns at the right left the view ...
    now = earliest  # ... and came back into it
    painted = [np.ascontiguousarray(shifted(picture("starry-night.jpg"), dx)) for dx in (3.0, 0.0)]
    stylizer = StubStylizer()
    history = [Previous(before, painted[0], None), Previous(earliest, painted[1], None)]
    stylize_frame(job(temporal_frames=2), stylizer, now, history, None)
    start = np.asarray(stylizer.calls[-1].start)
    entering = flow.entering_view(flow.optical_flow(now, before))
    assert entering[8:-8, -3:].all()
    # the frame two back saw those columns: they start as that frame painted them, not refilled
    assert np.abs(start[8:-8, -3:] - painted[1][8:-8, -3:].astype(np.float32)).mean() < 6


def test_where_the_view_enters_new_ground_the_start_is_the_source_in_its_neighbours_colours():
    source = np.ascontiguousarray(picture())  # what the view moved onto: real detail, its own colours
    height, width = source.shape[:2]
    rng = np.random.default_rng(0)
    painted = np.clip(rng.normal((40, 60, 160), 12, source.shape), 0, 255).astype(np.float32)  # dark blue strokes
    entering = np.zeros((height, width), bool)
    entering[:, -6:] = True  # a pan: new columns at the right
    start = chain._carried_start(painted, source, entering)
    assert np.array_equal(start[~entering], painted[~entering])  # carried pixels stay as carried
    strip, beside = start[:, -6:], painted[:, -20:-6]
    # no edge of colour where the strip meets the painted frame: its mean is the painting's, not the source's
    assert np.abs(strip.mean((0, 1)) - beside.mean((0, 1))).max() < 12
    assert np.abs(source[:, -6:].mean((0, 1)) - beside.mean((0, 1))).max() > 40
    # ... and it keeps the source's detail, which the content loss will hold
    ours, theirs = (detail.split(image.astype(np.float32).mean(2), 3)[1][:, -6:] for image in (start, source))
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.8

