"""Nothing lost: a render deletes, overwrites or trusts only what is its own.

Each case renders two or three frames of the sample at 64 px through `cli.main`, as a user would.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import cli
from pipeline import jobs, video
from pipeline.errors import InputError
from pipeline.images import load_rgb, save_rgb
from pipeline.workdir import WorkDir

from conftest import SAMPLE_CLIP, SAMPLE_STYLE

FAST = ["--size", "64", "--first-frame-iterations", "3", "--frame-iterations", "2", "--quiet"]


def run(*args) -> int:
    return cli.main([str(a) for a in args])


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines
    return lines[-1]


@pytest.fixture
def shot(tmp_path) -> Path:
    """A shot folder holding its own copies of the clip and the style."""
    folder = tmp_path / "shot"
    folder.mkdir()
    shutil.copy(SAMPLE_CLIP, folder / "clip.mp4")
    shutil.copy(SAMPLE_STYLE, folder / "style.jpg")
    return folder


def render_in(folder: Path, *extra) -> int:
    return run(folder / "clip.mp4", "--style", folder / "style.jpg", "-o", folder / "out.mp4", "--end", 3, *FAST, *extra)


def test_a_folder_with_files_of_its_own_is_refused_as_work_directory(shot, capsys, monkeypatch):
    before = sorted(p.name for p in shot.iterdir())
    assert render_in(shot, "--workdir", shot) == 2
    assert "not a work directory" in last_error(capsys)
    assert render_in(shot, "--workdir", shot, "--style-weight", "3", "--restart") == 2
    assert "not a work directory" in last_error(capsys)
    monkeypatch.chdir(shot)
    assert render_in(shot, "--workdir", ".", "--restart") == 2
    assert "not a work directory" in last_error(capsys)
    assert sorted(p.name for p in shot.iterdir()) == before


def test_restart_deletes_only_what_the_work_directory_wrote(shot, capsys):
    work = shot / "out.work"
    assert render_in(shot) == 0
    (work / "frames" / "notes.txt").write_text("mine")  # inside a folder of the layout: ours to delete
    assert render_in(shot, "--style-weight", "3") == 2
    assert "settings.style_weight 10.0 -> 3.0" in last_error(capsys)
    assert render_in(shot, "--style-weight", "3", "--restart", "--overwrite") == 0
    assert (shot / "clip.mp4").is_file() and (shot / "style.jpg").is_file()
    assert sorted(p.name for p in (work / "frames").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_a_damaged_frame_is_rendered_again_never_encoded(shot, capsys):
    frame = shot / "out.work" / "frames" / "000001.png"
    assert render_in(shot) == 0
    good = load_rgb(frame)
    frame.write_bytes(frame.read_bytes()[:200])  # truncated, as a full disk or a bad copy leaves it
    capsys.readouterr()
    assert run(shot / "clip.mp4", "--style", shot / "style.jpg", "-o", shot / "out.mp4", "--end", 3,
               "--assemble", *FAST) == 2
    assert "frames damaged since they were rendered: 1" in last_error(capsys)
    assert render_in(shot) == 0
    assert "frame 1: damaged (checksum mismatch); rendering it again" in capsys.readouterr().err
    assert (load_rgb(frame) == good).all()  # rendered again from the same previous frame: the same pixels
    assert video.probe(shot / "out.mp4").frame_count == 3


def test_assemble_refuses_a_damaged_frame_naming_it(shot, capsys):
    frame = shot / "out.work" / "frames" / "000002.png"
    assert render_in(shot) == 0
    encoded = (shot / "out.mp4").read_bytes()
    frame.write_bytes(frame.read_bytes()[:-10])
    assert run(shot / "clip.mp4", "--style", shot / "style.jpg", "-o", shot / "out.mp4", "--end", 3,
               "--assemble", *FAST) == 2
    assert "frames damaged since they were rendered: 2" in last_error(capsys)
    assert (shot / "out.mp4").read_bytes() == encoded  # the good earlier video is kept


def test_a_frame_after_a_changed_one_is_rendered_again(shot, capsys):
    """A frame warm-started from a previous frame that no longer exists belongs to no chain."""
    work = WorkDir(shot / "out.work")
    assert render_in(shot) == 0
    stats = work.stats_path(2)
    stats.write_text(stats.read_text().replace('"seed": "', '"seed": "0'))  # it continued some other frame 1
    assert render_in(shot) == 0
    assert "frame 2: damaged" not in capsys.readouterr().err
    assert work.continues(2, work.checksum(1))


def test_an_output_never_lands_on_an_input(shot, capsys):
    style = shot / "look.0000.png"
    save_rgb(style, load_rgb(shot / "style.jpg"))
    before = style.read_bytes()
    assert run(shot / "clip.mp4", "--style", style, "-o", shot / "look.%04d.png", "--end", 2, *FAST) == 2
    assert "is an input of this render" in last_error(capsys)
    assert style.read_bytes() == before
    link = shot / "link.mp4"
    link.symlink_to(shot / "clip.mp4")
    assert run(shot / "clip.mp4", "--style", shot / "style.jpg", "-o", link, "--end", 2, *FAST) == 2
    assert "is an input of this render" in last_error(capsys)


def test_a_moved_shot_folder_keeps_its_frames(shot, tmp_path, capsys):
    assert render_in(shot) == 0
    moved = tmp_path / "elsewhere" / "shot"
    shutil.move(shot, moved)
    mtimes = [p.stat().st_mtime_ns for p in sorted((moved / "out.work" / "frames").glob("*.png"))]
    capsys.readouterr()
    assert render_in(moved) == 0
    assert "3 already done" in capsys.readouterr().err
    assert [p.stat().st_mtime_ns for p in sorted((moved / "out.work" / "frames").glob("*.png"))] == mtimes


def test_an_existing_output_is_replaced_only_when_ours_or_asked(shot, capsys):
    precious = shot / "out.mp4"
    precious.write_bytes(b"an earlier delivery")
    assert render_in(shot) == 2
    assert f"{precious}: exists and was not written by this render" in last_error(capsys)
    assert precious.read_bytes() == b"an earlier delivery"
    assert render_in(shot, "--overwrite") == 0
    assert render_in(shot) == 0  # ours now: a rerun may encode it again
    sheet = shot / "out.sheet.png"
    sheet.write_bytes(b"not ours")
    assert render_in(shot, "--contact-sheet", "1") == 2
    assert f"{sheet}: exists" in last_error(capsys) and sheet.read_bytes() == b"not ours"


def test_a_percent_in_the_clip_name_is_not_a_pattern(tmp_path, capsys):
    clip = tmp_path / "50% off.mp4"
    shutil.copy(SAMPLE_CLIP, clip)
    assert run(clip, "--style", SAMPLE_STYLE, "--end", 2, *FAST) == 0
    assert video.probe(tmp_path / "50% off.stylized.mp4").frame_count == 2
    assert (tmp_path / "50% off.stylized.work" / "manifest.json").is_file()


def test_a_manifest_that_is_not_an_object_is_one_line(shot, capsys):
    work = shot / "out.work"
    work.mkdir()
    (work / "manifest.json").write_text("[]")
    assert render_in(shot) == 2
    assert "manifest.json: not a manifest" in last_error(capsys)


def test_a_busy_work_directory_is_refused_naming_its_holder(shot, capsys):
    with WorkDir(shot / "out.work").locked():
        assert render_in(shot) == 2
        error = last_error(capsys)
        assert "in use by another render" in error and "pid" in error and "--wait" in error
    with WorkDir(shot / "out.work").locked(shared=True):  # farm ranges run side by side
        with WorkDir(shot / "out.work").locked(shared=True):
            pass


def test_job_entries_may_not_share_a_work_directory(tmp_path):
    job = tmp_path / "jobs.toml"
    job.write_text(f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\noutput = "shot.mp4"\n'
                   f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\noutput = "shot.mov"\n')
    with pytest.raises(InputError, match=r"entries 1 .* and 2 .* both use the work directory .*shot\.work"):
        jobs.parse(job)
    job.write_text(job.read_text().replace('output = "shot.mov"', 'output = "shot.mov"\nworkdir = "mov.work"'))
    assert [entry.job.workdir_path.name for entry in jobs.parse(job)] == ["shot.work", "mov.work"]


def test_a_job_output_may_not_be_the_job_file(tmp_path):
    job = tmp_path / "jobs.mp4"
    job.write_text(f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\noutput = "jobs.mp4"\n')
    with pytest.raises(InputError, match="is an input"):
        jobs.parse(job)
