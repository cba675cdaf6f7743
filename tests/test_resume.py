"""Overnight robustness for real: SIGKILL at chosen instants and resume, signals, full disk, OOM.

A render runs in a subprocess and is killed while it sits at a named instant: tests/pause_at.py
runs cli.py with one of its functions wrapped to print "test-pause: <point>" and sleep there. The same command then resumes (in-process, to spare a TensorFlow start) and must produce
exactly the frames of an uninterrupted run, the right output and no temporaries.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cli
from pipeline import chain, images, video, workdir
from pipeline.files import file_sha256

from conftest import REPO, SAMPLE_CLIP, SAMPLE_STYLE, SAMPLE_STYLE_2

FRAMES = 5
FAST = ["--size", "64", "--first-frame-iterations", "4", "--frame-iterations", "3", "--quiet"]


def args_for(out: Path, *extra) -> list[str]:
    return [str(SAMPLE_CLIP), "--style", str(SAMPLE_STYLE), "-o", str(out), "--end", str(FRAMES), *FAST, *extra]


def frames_of(work: Path) -> dict[str, np.ndarray]:
    return {p.name: images.load_rgb16(p) for p in sorted((work / "frames").glob("*.png"))}


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


def start(out: Path, pause: str | None = None, *extra) -> subprocess.Popen:
    launcher = [str(REPO / "tests" / "pause_at.py"), pause] if pause else [str(REPO / "cli.py")]
    return subprocess.Popen([sys.executable, *launcher, *args_for(out, *extra)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 180) -> str:
    """stderr until a line holds `marker`; the process is killed if that takes too long."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    seen = []
    try:
        for line in process.stderr:
            seen.append(line)
            if marker in line:
                return "".join(seen)
    finally:
        timer.cancel()
    raise AssertionError(f"exit {process.wait()} before {marker!r}:\n{''.join(seen)}")


def kill_hard(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: an ffmpeg child dies too
    process.wait(timeout=30)
    process.stderr.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    """The frames of an uninterrupted render (in a subprocess, like the killed ones)."""
    out = tmp_path_factory.mktemp("reference") / "clip.mp4"
    process = start(out)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    frames = frames_of(out.with_name("clip.work"))
    assert len(frames) == FRAMES
    return frames


@pytest.mark.parametrize("point", ["optimize:1", "frame-write:2", "encode"])
def test_sigkill_then_resume_gives_the_uninterrupted_frames(tmp_path, reference, point, capsys):
    out, work = tmp_path / "clip.mp4", tmp_path / "clip.work"
    process = start(out, point)
    try:
        wait_for_line(process, f"test-pause: {point}")
        finished_before = {p.name: p.stat().st_mtime_ns for p in (work / "frames").glob("*.png")}
        if point == "frame-write:2":  # killed inside the atomic write: the temporary is complete, not renamed
            assert list((work / "frames").glob(".000002.png.*.tmp")) and not (work / "frames" / "000002.png").exists()
        if point == "encode":  # killed between ffmpeg and the rename into place
            assert list(tmp_path.glob(".clip.partial-*.mp4")) and not out.exists()
    finally:
        kill_hard(process)
    assert len(finished_before) == {"optimize:1": 1, "frame-write:2": 2, "encode": FRAMES}[point]

    assert cli.main(args_for(out)) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"{len(finished_before)} already done" in err
    assert video.probe(out).frame_count == FRAMES
    resumed = frames_of(work)
    assert resumed.keys() == reference.keys()
    # Measured: TensorFlow on this CPU is bit-exact run to run, and a resumed chain warm-starts
    # from the PNG an uninterrupted one also reads back, so the frames are identical.
    for name in reference:
        assert np.array_equal(resumed[name], reference[name]), name
    assert {p.name: p.stat().st_mtime_ns for p in (work / "frames").glob("*.png") if p.name in finished_before} \
        == finished_before, "finished frames were rendered again"
    assert sorted(p.name for p in (work / "stats").glob("*.json")) == [f"{i:06d}.json" for i in range(FRAMES)]
    assert leftovers(tmp_path) == []


def test_sigint_stops_with_130_and_keeps_frames(tmp_path):
    out, work = tmp_path / "clip.mp4", tmp_path / "clip.work"
    process = start(out, "optimize:2")
    wait_for_line(process, "test-pause: optimize:2")
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "finished frames are kept in" in last and "run the same command again to resume" in last
    assert sorted(frames_of(work)) == ["000000.png", "000001.png"]
    assert not out.exists() and leftovers(tmp_path) == []


def test_sigterm_mid_render_stops_with_143_and_keeps_frames(tmp_path):
    """No pause: SIGTERM lands wherever the render is once frame 1 is on disk."""
    out, work = tmp_path / "clip.mp4", tmp_path / "clip.work"
    process = start(out, None, "--end", "20")
    deadline = time.monotonic() + 180
    while not (work / "frames" / "000001.png").exists():
        assert process.poll() is None and time.monotonic() < deadline, "render ended before frame 1"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "run the same command again to resume" in err.strip().splitlines()[-1]
    kept = frames_of(work)
    assert 2 <= len(kept) < 20 and all(f.shape == (48, 64, 3) for f in kept.values())
    assert not out.exists() and leftovers(tmp_path) == []


def _failing_on_frame(monkeypatch, frame: int) -> None:
    """write_atomically raises ENOSPC when frame `frame`'s PNG is written."""
    real = images.write_atomically

    def write(path, data):
        if path.name == f"{frame:06d}.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(images, "write_atomically", write)
    monkeypatch.setattr(workdir, "write_atomically", write)  # finished frames are written there


def test_disk_full_mid_render_is_one_line_and_resumable(tmp_path, reference, monkeypatch, capsys):
    out, work = tmp_path / "clip.mp4", tmp_path / "clip.work"
    _failing_on_frame(monkeypatch, 3)
    assert cli.main(args_for(out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (f"error: {work}: disk full while writing frame 3 "
                         "(free space, then run the same command again to resume)")
    assert sorted(frames_of(work)) == ["000000.png", "000001.png", "000002.png"]
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert cli.main(args_for(out)) == 0
    assert "3 already done" in capsys.readouterr().err
    assert all(np.array_equal(frame, reference[name]) for name, frame in frames_of(work).items())


def test_disk_full_after_restart_says_resume_without_restart(tmp_path, monkeypatch, capsys):
    out = tmp_path / "clip.mp4"
    _failing_on_frame(monkeypatch, 0)
    assert cli.main(args_for(out, "--restart", "--end", "1")) == 2
    assert "run the same command again without --restart" in capsys.readouterr().err


@pytest.mark.parametrize("error", ["ResourceExhaustedError", "MemoryError"])
def test_out_of_memory_names_the_size_and_the_remedy(tmp_path, monkeypatch, capsys, error):
    import tensorflow as tf

    def stylize(*args, **kwargs):
        if error == "MemoryError":
            raise MemoryError
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1,64,48,64]")

    monkeypatch.setattr(chain.Stylizer, "stylize", stylize)
    assert cli.main(args_for(tmp_path / "clip.mp4")) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err
    assert "out of memory" in last and "64x48" in last and "--preset preview" in last
    assert "not even --size 64 fits" in last  # the smallest size tried


def _out_of_memory(*args, **kwargs):
    import tensorflow as tf

    raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")


def test_out_of_memory_names_the_largest_size_that_fits(tmp_path, monkeypatch, capsys):
    """Memory for frames up to 80 px wide (an injected limit): the 128 px render fails, and the
    sizes a quarter smaller each are tried until one evaluates."""
    evaluate, tried = chain.Stylizer.evaluate, []

    def evaluate_within_memory(stylizer, image):
        tried.append(stylizer.shape[2])
        return _out_of_memory() if stylizer.shape[2] > 80 else evaluate(stylizer, image)

    monkeypatch.setattr(chain.Stylizer, "stylize_cold", _out_of_memory)
    monkeypatch.setattr(chain.Stylizer, "evaluate", evaluate_within_memory)
    assert cli.main(args_for(tmp_path / "clip.mp4", "--size", "128")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "out of memory stylizing frame 0 at 128x96; --size 64 fits" in last
    assert tried == [96, 64]


def test_the_size_that_fits_has_room_for_the_device_optimizers_buffers(tmp_path, monkeypatch, capsys):
    """With the device L-BFGS, its buffers (the history above all: up to 85 images) are made
    before the probe's evaluation: a size whose evaluation fits but whose buffers do not is not
    advised. Here the buffers fit up to 80 px wide (an injected limit)."""
    from pipeline.device_optimizer import DeviceOptimizer

    make, tried = DeviceOptimizer.__init__, []

    def make_within_memory(optimizer, loss_and_gradient, shape, settings, rows=1):
        tried.append(shape[2])
        return _out_of_memory() if shape[2] > 80 else make(optimizer, loss_and_gradient, shape, settings, rows)

    monkeypatch.setattr(chain.Stylizer, "stylize_cold", _out_of_memory)
    monkeypatch.setattr(DeviceOptimizer, "__init__", make_within_memory)
    assert cli.main(args_for(tmp_path / "clip.mp4", "--size", "128", "--optimizer", "lbfgs")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "out of memory stylizing frame 0 at 128x96; --size 64 fits" in last
    assert tried == [96, 64]


def test_frames_without_manifest_are_not_trusted(tmp_path, capsys):
    """E.g. a --restart killed half way through deleting: refused, not resumed from."""
    out, work = tmp_path / "clip.mp4", tmp_path / "clip.work"
    (work / "frames").mkdir(parents=True)
    images.save_rgb(work / "frames" / "000000.png", np.zeros((48, 64, 3), np.uint8))
    assert cli.main(args_for(out, "--end", "1")) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    assert cli.main(args_for(out, "--end", "1", "--restart")) == 0


def as_before_16_bit_frames(work: Path) -> None:
    """Rewrite a work directory as one written before frames were 16 bit: 8-bit PNGs, each
    frame's stats holding its file's checksum and, as its seed, the frame before's."""
    previous = None
    for frame in sorted((work / "frames").glob("*.png")):
        images.save_rgb(frame, images.load_rgb(frame))
        stats_path = work / "stats" / f"{frame.stem}.json"
        stats = json.loads(stats_path.read_text())
        stats.update(sha256=file_sha256(frame), seed=previous if stats["seed"] else None)
        stats_path.write_text(json.dumps(stats))
        previous = stats["sha256"]


def test_a_work_directory_of_8_bit_frames_from_before_resumes(tmp_path, capsys):
    out, work = tmp_path / "old.%04d.png", tmp_path / "old.work"
    args = [str(SAMPLE_CLIP), "--style", str(SAMPLE_STYLE), "-o", str(out), "--end", "3", "--bit-depth", "16", *FAST]
    assert cli.main(args) == 0, capsys.readouterr().err
    last = work / "frames" / "000002.png"
    uninterrupted = images.load_rgb16(last)
    as_before_16_bit_frames(work)
    last.unlink()
    old = {p: p.stat().st_mtime_ns for p in (work / "frames").glob("*.png")}

    assert cli.main(args) == 0, capsys.readouterr().err
    assert "2 already done" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in old} == old, "the 8-bit frames were rendered again"
    # The chain reads a frame at 8 bits, 16-bit or not, so it continues from the old frames exactly.
    assert np.array_equal(images.load_rgb16(last), uninterrupted)
    for index in (0, 1):  # their 16-bit output is the 8-bit frame scaled: no precision to give
        eight = images.load_rgb(work / "frames" / f"{index:06d}.png")
        assert np.array_equal(images.load_rgb16(tmp_path / f"old.{index:04d}.png"), eight.astype(np.uint16) * 257)
    assert (images.load_rgb16(tmp_path / "old.0002.png") % 257 != 0).any()  # the new frame's float levels


@pytest.mark.parametrize("names, recorded, read_as", [
    (None, "lbfgs", "scipy-lbfgs"),  # written when "lbfgs" was SciPy's: a render started then resumes
    (2, "lbfgs", "lbfgs"),           # written since: "lbfgs" is the device optimizer
    (None, "adam", "adam"),
])
def test_manifests_before_the_device_optimizer_read_lbfgs_as_scipys(tmp_path, names, recorded, read_as):
    manifest = {"identity": {"settings": {"optimizer": recorded}}, **({"optimizer_names": names} if names else {})}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert workdir.WorkDir(tmp_path).read_manifest()["identity"]["settings"]["optimizer"] == read_as


def test_auto_resumes_with_the_optimizer_the_work_directory_began_with(tmp_path, capsys):
    """A render begun with SciPy's optimizer (what "auto" chose on a CPU until 2026-12) resumes
    under "auto" with it, saying so; a named optimizer that differs is still a different render."""
    out, work = tmp_path / "shot.%04d.png", tmp_path / "shot.work"
    args = [str(SAMPLE_CLIP), "--style", str(SAMPLE_STYLE), "-o", str(out), *FAST]
    assert cli.main([*args, "--end", "1", "--optimizer", "scipy-lbfgs"]) == 0, capsys.readouterr().err
    first = (work / "frames" / "000000.png").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main([*args, "--end", "2"]) == 0
    err = capsys.readouterr().err
    assert "resumes with the optimizer it began with, scipy-lbfgs, not auto's lbfgs" in err
    assert "optimizer scipy-lbfgs\n" in err and "1 already done" in err and "note:" not in err
    assert (work / "frames" / "000000.png").stat().st_mtime_ns == first
    assert json.loads((work / "manifest.json").read_text())["identity"]["settings"]["optimizer"] == "scipy-lbfgs"
    assert cli.main([*args, "--end", "2", "--optimizer", "lbfgs"]) == 2
    assert "settings.optimizer 'scipy-lbfgs' -> 'lbfgs'" in capsys.readouterr().err


def manifest_seen_late(monkeypatch, missed: int) -> list:
    """Work directories read no manifest at their first `missed` looks, as a task that looked just
    before another task wrote it; returns the looks, which grow as they are made."""
    read, looks = workdir.WorkDir.read_manifest, []

    def late_read(work):
        looks.append(work)
        return None if len(looks) <= missed else read(work)

    monkeypatch.setattr(workdir.WorkDir, "read_manifest", late_read)
    return looks


def test_a_farm_task_of_another_render_starting_together_is_refused_not_mixed_in(tmp_path, monkeypatch):
    """Two tasks of different renders (another painting) given one work directory, the later having
    looked before the first's manifest appeared: it is refused, and the first's manifest stands
    (before, the later's replaced it and both rendered frames into one directory)."""
    from pipeline import planning

    parse = cli.build_parser().parse_args
    first = cli.job_from_args(parse(args_for(tmp_path / "shot.mp4")))
    other = cli.job_from_args(parse([str(SAMPLE_STYLE_2) if arg == str(SAMPLE_STYLE) else arg
                                     for arg in args_for(tmp_path / "shot.mp4")]))
    with planning.holding(first, shared=True):
        pass
    written = (first.workdir_path / "manifest.json").read_text()
    manifest_seen_late(monkeypatch, 2)
    with pytest.raises(workdir.DifferentRender, match="style"):
        with planning.holding(other, shared=True):
            pass
    assert (first.workdir_path / "manifest.json").read_text() == written


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_file_created_only_where_none_exists_leaves_the_others_file(tmp_path, monkeypatch, hard_links):
    """The manifest's first write (files.create_atomically): on a filesystem without hard links
    (some network shares) it checks, then renames."""
    from pipeline import files

    if not hard_links:
        def no_links(source, target):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(files.os, "link", no_links)
    path = tmp_path / "manifest.json"
    assert files.create_atomically(path, b"first") is True
    assert files.create_atomically(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("missed_looks", [0, 2])
def test_farm_tasks_starting_together_render_with_the_first_ones_optimizer(tmp_path, monkeypatch, capsys, missed_looks):
    """Two --frames tasks, both started before a manifest existed, the first with SciPy's optimizer
    (named, or under "auto" of a release before 2026-12), the later under "auto": the later follows
    the first's optimizer instead of being refused, whether the first's manifest appeared before
    the later took its hold (0) or between its look and its write (2)."""
    from pipeline import planning

    began = "scipy-lbfgs"
    parse = cli.build_parser().parse_args
    first, later = (cli.job_from_args(parse(args_for(tmp_path / "shot.mp4", *extra))) for extra in
                    (["--optimizer", began], []))
    with planning.holding(first, shared=True):
        pass
    written = (first.workdir_path / "manifest.json").read_text()
    looks = manifest_seen_late(monkeypatch, missed_looks)
    with planning.holding(later, shared=True) as (held, _):
        assert held.settings.optimizer == began
    assert f"another task began it with the optimizer {began}; this one follows" in capsys.readouterr().err
    assert (first.workdir_path / "manifest.json").read_text() == written
    assert len(looks) == missed_looks + 2
    assert not list(first.workdir_path.glob(".*.tmp"))
