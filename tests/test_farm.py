"""Chunked rendering: farm-manager frame ranges and the Ray backend on a real local cluster (CPU)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import cli
from pipeline import video
from pipeline.images import load_rgb
from pipeline.workdir import WorkDir

import worker_faults
from conftest import REPO, SAMPLE_CLIP, SAMPLE_STYLE

TINY = ["--size", "64", "--first-frame-iterations", "3", "--frame-iterations", "2", "--quiet"]
CHUNKS = ["--chunk-size", "3", "--overlap", "2"]


def run(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray cluster for the session, dashboard off, with tests/worker_faults.py in its
    workers. The crash marker exists (disarmed) until a test deletes it: the next chunk task then
    kills its worker once."""
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("ray") / "crashed"
    marker.touch()
    # Workers import this checkout's pipeline (not another one an editable install may point at).
    path = os.pathsep.join(filter(None, [str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    runtime_env = {"worker_process_setup_hook": "worker_faults.install",
                   "env_vars": {"PYTHONPATH": path, worker_faults.MARKER_ENV: str(marker)}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    yield marker
    ray.shutdown()


def frames_of(workdir):
    return sorted(int(p.stem) for p in (workdir / "frames").glob("*.png"))


def test_three_chunks_on_ray_render_stitch_and_encode_like_a_local_render(ray_cluster, tmp_path, monkeypatch):
    local, farmed = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", local, "--end", 9, *TINY) == 0
    from pipeline import render

    def stitches_already_done(job, job_plan):  # Ray tasks must have stitched before assembly
        stitched = sorted(p.name for p in (job.workdir_path / "stitched").rglob("*.png"))
        assert stitched == ["000001.png", "000002.png", "000004.png", "000005.png"]
        return []

    monkeypatch.setattr(render, "stitch_missing", stitches_already_done)
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", farmed, "--end", 9, *TINY, *CHUNKS, "--ray") == 0
    work = tmp_path / "ray.work"
    assert frames_of(work) == list(range(9))  # every frame exactly once
    assert sorted(p.name for p in (work / "warmup").iterdir()) == ["000003", "000006"]
    expected, got = video.probe(local), video.probe(farmed)
    assert (got.frame_count, got.fps, got.has_audio, got.width) == (expected.frame_count, expected.fps, True, expected.width)
    # Borders stitched by Ray once both chunks were done: the encoded frames before each border
    # are the stitch's (frames 1-2 before 3, 4-5 before 6); elsewhere the chunks' own frames.
    for first, stitched in ((3, (1, 2)), (6, (4, 5))):
        folder = work / "stitched" / f"{first:06d}" / "frames"
        assert sorted(int(p.stem) for p in folder.glob("*.png")) == list(stitched)
        for index in stitched:
            np.testing.assert_array_equal(load_rgb(work / "final" / f"{index:06d}.png"), load_rgb(folder / f"{index:06d}.png"))
    for index in (0, 3, 6, 7, 8):
        np.testing.assert_array_equal(load_rgb(work / "final" / f"{index:06d}.png"), load_rgb(work / "frames" / f"{index:06d}.png"))
    # The first chunk is the local chain's first frames, computed in a Ray worker (one core, so
    # TensorFlow may sum in another order: equal up to rounding, not bit for bit).
    for index in (0, 1, 2):
        ours, theirs = (load_rgb(root / "frames" / f"{index:06d}.png").astype(int) for root in (work, tmp_path / "local.work"))
        assert np.abs(ours - theirs).mean() < 1.0, index


def test_a_render_begun_with_scipys_optimizer_goes_on_with_it_on_ray(ray_cluster, tmp_path, capsys):
    """Under "auto" a Ray render resumes with the optimizer the work directory began with, as a
    local one does, and without the note meant for tasks started together."""
    output = tmp_path / "shot.mp4"
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 3, *TINY, *CHUNKS, "--optimizer", "scipy-lbfgs") == 0
    capsys.readouterr()
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 6, *TINY, *CHUNKS, "--ray") == 0
    assert "note:" not in capsys.readouterr().err
    manifest = json.loads((tmp_path / "shot.work" / "manifest.json").read_text())
    assert manifest["identity"]["settings"]["optimizer"] == "scipy-lbfgs"
    assert frames_of(tmp_path / "shot.work") == list(range(6))


def test_a_worker_that_dies_is_retried(ray_cluster, tmp_path):
    ray_cluster.unlink()  # arm the crash hook: the first chunk task to start kills its worker
    output = tmp_path / "crash.mp4"
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 6, *TINY, *CHUNKS, "--ray") == 0
    assert ray_cluster.exists()  # it did crash once
    assert video.probe(output).frame_count == 6
    assert frames_of(tmp_path / "crash.work") == list(range(6))


def test_farm_ranges_then_assembly(tmp_path, capsys):
    output, work = tmp_path / "farm.mp4", tmp_path / "farm.work"
    common = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 6, *TINY, *CHUNKS]
    assert run(*common, "--frames", "0-2") == 0
    assert run(*common, "--assemble") == 2  # frames 3-5 missing: refused, named
    assert "frames not rendered yet: 3-5" in capsys.readouterr().err
    assert not output.exists()
    assert run(*common, "--frames", "3-5") == 0
    assert frames_of(work) == list(range(6))
    assert frames_of(work / "warmup" / "000003") == [1, 2]
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*.png")}
    assert run(*common, "--frames", "3-5") == 0  # a retried farm task changes nothing
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*.png")} == before
    assert not (work / "stitched").exists()  # no --stitch task ran: assembly stitches the border itself
    assert run(*common, "--assemble") == 0
    assert frames_of(work / "stitched" / "000003") == [1, 2]
    info = video.probe(output)
    assert info.frame_count == 6 and info.has_audio and abs(float(info.fps) - 30.02) < 1e-3


def test_a_later_chunk_starts_from_the_ranges_first_frame_carried_to_it(tmp_path):
    """Its first warm-up frame continues the range's first frame, rendered cold as the first chunk
    renders it and carried along the flow, so the chains on either side of a border paint alike."""
    work = tmp_path / "farm.work"
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", tmp_path / "farm.mp4", "--end", 6, *TINY, *CHUNKS,
               "--frames", "3-5") == 0
    first = WorkDir(work).warmup(3).read_stats([1])[1]
    assert first["start"] == "warm" and first["evaluations"] <= 3  # the warm budget (2), not the cold one


def test_farm_range_outside_the_clip_is_refused(tmp_path, capsys):
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", tmp_path / "x.mp4", *TINY, "--frames", "30-40") == 2
    assert "outside the clip's frames 0-35" in capsys.readouterr().err


def test_cold_farm_ranges_have_no_warm_up_and_no_stitch(tmp_path):
    """A cold render (the baseline `eval --baseline` wants) has no chain to warm up or join."""
    output, work = tmp_path / "cold.mp4", tmp_path / "cold.work"
    common = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 6, *TINY, *CHUNKS, "--init", "cold"]
    assert run(*common, "--frames", "4-5") == 0
    assert frames_of(work) == [4, 5] and not (work / "warmup").exists()
    assert run(*common, "--frames", "0-3") == 0
    assert run(*common, "--assemble") == 0
    assert not (work / "stitched").exists()
    assert video.probe(output).frame_count == 6
