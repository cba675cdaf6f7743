"""Several chains on one device (`chains`): batched evaluations give each chain what it would get alone."""
import threading
import time

import cv2
import numpy as np
import pytest

import cli
from pipeline import side_by_side
from pipeline.batch import BatchedEvaluations
from pipeline.config import make_settings
from pipeline.images import load_rgb
from pipeline.stylize import Stylizer, TemporalGuide

from conftest import SAMPLE_CLIP, SAMPLE_STYLE, SAMPLE_STYLE_2

SIZE = (48, 64)  # (height, width)
TINY = ["--size", "64", "--first-frame-iterations", "3", "--frame-iterations", "2", "--quiet"]


@pytest.fixture(scope="module")
def stylizers(vgg_weights):
    """A stylizer per optimizer, made on first use."""
    style = cv2.resize(load_rgb(SAMPLE_STYLE), (160, 106), interpolation=cv2.INTER_AREA)
    made = {}

    def stylizer(optimizer: str = "scipy-lbfgs") -> Stylizer:
        if optimizer not in made:
            settings = make_settings("default", {"stop_window": 0, "coarse_levels": 0, "optimizer": optimizer})
            made[optimizer] = Stylizer(settings, vgg_weights, style, SIZE)
        return made[optimizer]
    return stylizer


def frame_pair():
    """Two different frames to optimize, the second with a temporal guide over half of it."""
    painting = load_rgb(SAMPLE_STYLE_2)
    first = cv2.resize(painting[:300, :400], SIZE[::-1], interpolation=cv2.INTER_AREA)
    second = cv2.resize(painting[200:500, 300:700], SIZE[::-1], interpolation=cv2.INTER_AREA)
    reliability = np.zeros(SIZE, np.float32)
    reliability[:, : SIZE[1] // 2] = 1
    guide = TemporalGuide(np.full((*SIZE, 3), 120, np.float32), reliability)
    return [(first, None), (second, guide)]


@pytest.mark.parametrize("optimizer", ["scipy-lbfgs", "lbfgs", "adam"])
def test_chains_optimized_together_equal_each_alone(stylizers, optimizer):
    stylizer = stylizers(optimizer)
    alone = [stylizer.stylize(content, content, 8, guide) for content, guide in frame_pair()]
    batch = BatchedEvaluations(stylizer, 2)
    together = [None, None]

    def optimize(slot, content, guide):
        together[slot] = batch.chain(slot).stylize(content, content, 8, guide)

    threads = [threading.Thread(target=optimize, args=(slot, *pair)) for slot, pair in enumerate(frame_pair())]
    with batch.optimizing(0), batch.optimizing(1):  # the first batch waits for both chains
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert batch.images > batch.batches  # some batches held both frames
    for one, other in zip(alone, together):
        assert one.evaluations == other.evaluations
        assert other.losses["total"] == pytest.approx(one.losses["total"], rel=1e-3)
        assert np.abs(one.levels - other.levels).mean() < 0.05
        assert len(one.trace) == len(other.trace)
    assert together[1].losses["temporal"] > 0 and together[0].losses["temporal"] == 0  # each its own guide


@pytest.mark.parametrize("optimizer", ["scipy-lbfgs", "lbfgs"])
def test_a_chain_alone_in_its_batch_is_not_kept_waiting(stylizers, optimizer):
    content, guide = frame_pair()[1]
    batch = BatchedEvaluations(stylizers(optimizer), 3)  # two slots never optimize
    result = batch.chain(1).stylize(content, content, 4, guide)
    assert result.evaluations >= 4 and batch.images == batch.batches  # every batch ran it alone
    # SciPy's batches are evaluations; the device's are calls of several iterations (the idle rows not moved)
    if optimizer == "scipy-lbfgs":
        assert batch.batches == result.evaluations
    else:
        assert batch.batches < result.evaluations


@pytest.mark.parametrize("optimizer", ["scipy-lbfgs", "lbfgs"])
def test_side_by_side_chains_render_the_farms_chunks(tmp_path, optimizer):
    """`--chains 2` renders the chunks a farm would (their warm-ups, the stitch) in one process."""
    common = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "--end", 6, *TINY, "--overlap", 2, "--optimizer", optimizer]
    assert cli.main([str(a) for a in (*common, "-o", tmp_path / "two.mp4", "--chains", 2)]) == 0
    assert cli.main([str(a) for a in (*common, "-o", tmp_path / "farm.mp4", "--chunk-size", 3, "--frames", "3-5")]) == 0
    work, farm = tmp_path / "two.work", tmp_path / "farm.work"
    assert sorted(int(p.stem) for p in (work / "frames").glob("*.png")) == list(range(6))
    assert sorted(int(p.stem) for p in (work / "stitched" / "000003" / "frames").glob("*.png")) == [1, 2]
    for index in (3, 4, 5):  # the second chunk, as the farm task renders it alone
        ours, theirs = (load_rgb(w / "frames" / f"{index:06d}.png").astype(float) for w in (work, farm))
        assert np.abs(ours - theirs).mean() < 1.0, index


def test_chains_share_one_render_of_the_ranges_first_frame(monkeypatch):
    """Every chunk but the first starts from the range's first frame rendered cold; with several
    chains in one process it is rendered once, by whichever chain asks first."""
    calls = []

    def slow_shared_start(job_plan, stylizer, notify):
        calls.append(stylizer)
        time.sleep(0.05)  # the others ask while it renders
        return f"start rendered by chain {stylizer}"

    monkeypatch.setattr(side_by_side, "shared_start", slow_shared_start)
    start_from, got = side_by_side._OneSharedStart(), []
    threads = [threading.Thread(target=lambda slot=slot: got.append(start_from(None, slot, None))) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and got == [f"start rendered by chain {calls[0]}"] * 3
