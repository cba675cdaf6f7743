"""Batch job files: parsing, a failing entry among good ones, the summary, the log, resuming."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import cli
from pipeline import jobs, video
from pipeline.config import Style
from pipeline.errors import InputError

from conftest import REPO, SAMPLE_CLIP, SAMPLE_STYLE

TINY = 'size = 64\nfirst_frame_iterations = 2\nframe_iterations = 1\n'


def write_job(directory: Path, text: str, name: str = "jobs.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_lists_multiply_and_paths_are_relative_to_the_job_file(tmp_path):
    (tmp_path / "out").mkdir()
    path = write_job(tmp_path, '''
output_dir = "out"
preset = "preview"
style_weight = 7
[[render]]
video = "clip.mp4"
style = ["a.jpg", "b.png"]
preset = ["preview", "final"]
end = 10
[[render]]
video = "clip.mp4"
style = "a.jpg"
output = "{video}-{style}.mov"
style_weight = 30
size = 128
''')
    entries = jobs.parse(path)
    assert len(entries) == 5
    first, last = entries[0].job, entries[-1].job
    assert first.video == tmp_path / "clip.mp4" and first.style_paths == (tmp_path / "a.jpg",)
    assert first.output == tmp_path / "out" / "clip.a.preview.mp4" and first.end == 10
    assert entries[1].job.output.name == "clip.a.final.mp4"
    assert first.settings.style_weight == 7 and first.settings.size == 256  # job key over preset
    assert entries[1].job.settings.size == 1024 and entries[1].job.settings.style_weight == 7
    assert last.output == tmp_path / "out" / "clip-a.mov" and last.settings.style_weight == 30
    assert last.settings.size == 128 and last.end is None
    assert [e.number for e in entries] == [1, 2, 3, 4, 5]


def test_a_list_of_tables_is_one_blend_and_a_blend_can_be_one_style_of_a_product(tmp_path):
    path = write_job(tmp_path, '''
[[render]]
video = "clip.mp4"
style = [{path = "a.jpg", weight = 0.7}, {path = "b.jpg", weight = 0.3}]
[[render]]
video = "clip.mp4"
style = ["c.jpg", [{path = "a.jpg", weight = 1}, {path = "b.jpg", weight = 3}]]
preset = "preview"
''')
    blend, single, product = (entry.job for entry in jobs.parse(path))
    assert blend.style == (Style(tmp_path / "a.jpg", 0.7), Style(tmp_path / "b.jpg", 0.3))
    assert blend.output.name == "clip.a-70+b-30.default.mp4"
    assert single.style == (Style(tmp_path / "c.jpg", 1.0),)
    assert product.style == (Style(tmp_path / "a.jpg", 0.25), Style(tmp_path / "b.jpg", 0.75))
    assert [e.name for e in jobs.parse(path)][0] == "clip / a 70% + b 30% / default"


@pytest.mark.parametrize("style, named", [
    ('[{path = "a.jpg", weight = -1}, {path = "b.jpg"}]', "a.jpg: style weight -1.0 must be"),
    ('[{path = "a.jpg", weight = "lots"}]', "a.jpg: style weight 'lots' must be a number"),
    ('[{path = "a.jpg", weight = 0}, {path = "b.jpg", weight = 0}]', "weights sum to 0"),
    ('[{path = "a.jpg", share = 1}]', "unknown key(s) share"),
    ('[{weight = 1}]', "has no path"),
    ('["a.jpg", {path = "b.jpg"}]', "mixes paths and"),
])
def test_a_bad_blend_is_one_line_naming_it(tmp_path, style, named):
    path = write_job(tmp_path, f'[[render]]\nvideo = "a.mp4"\nstyle = {style}\n')
    with pytest.raises(jobs.JobFileError, match=re.escape(named)):
        jobs.parse(path)


def test_no_output_may_be_a_blends_style(tmp_path):
    path = write_job(tmp_path, '[[render]]\nvideo = "a.mp4"\noutput = "b.jpg"\n'
                               'style = [{path = "a.jpg"}, {path = "b.jpg"}]\n')
    with pytest.raises(jobs.JobFileError, match="b.jpg"):
        jobs.parse(path)


@pytest.mark.parametrize("text, named", [
    ('[[render]\nvideo = "a.mp4"', "not a readable TOML"),
    ('preset = "preview"\n', "[[render]]"),
    ('[[render]]\nvideo = "a.mp4"\n', "has no style"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\ncolour = 3\n', "unknown key(s) colour"),
    ('bogus = 1\n[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\n', "unknown key(s) bogus"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\noptimizer = "sgd"\n', "'sgd'"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\npreset = "nope"\n', "no such preset"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\nend = "ten"\n', "frame number"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = ["s.jpg", "t.jpg"]\noutput = "same.mp4"\n', "both use the output"),
    ('[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\noutput = "{clip}.mp4"\n', "placeholder"),
])
def test_a_bad_job_file_is_one_line_and_exit_2(tmp_path, capsys, text, named):
    path = write_job(tmp_path, text)
    with pytest.raises(jobs.JobFileError, match=re.escape(named)):
        jobs.parse(path)
    assert cli.main(["--job", path]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}") and named in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.toml"]  # nothing rendered, no log


def test_job_flags_do_not_mix_with_a_single_render(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--job", tmp_path / "jobs.toml", "--style", SAMPLE_STYLE])
    assert stop.value.code == 2 and "--style" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli.main([SAMPLE_CLIP])
    assert stop.value.code == 2 and "--style" in capsys.readouterr().err


def test_a_failing_entry_does_not_stop_the_others_and_a_rerun_resumes(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    shutil.copy(SAMPLE_CLIP, clip)
    path = write_job(tmp_path, TINY + f'''
[[render]]
video = "clip.mp4"
style = ["{SAMPLE_STYLE}", "{REPO / 'samples' / 'starry-night.jpg'}"]
end = 2
[[render]]
video = "missing.mp4"
style = "{SAMPLE_STYLE}"
''')
    assert cli.main(["--job", path, "--quiet"]) == 1
    err = capsys.readouterr().err
    table = err[err.index("#  entry"):].splitlines()
    assert re.match(r"1\s+clip / kandinsky / default \[:2\]\s+done\s+2/2\s+0:00:\d\d\s+\S+clip.kandinsky.default.mp4", table[1])
    assert re.match(r"2\s+clip / starry-night / default \[:2\]\s+done\s+2/2", table[2])
    assert re.match(r"3\s+missing / kandinsky / default\s+failed\s+-", table[3])
    assert "#3: " in err and "missing.mp4: file not found" in err and table[-1] == "2 done, 1 failed"
    outputs = [tmp_path / "clip.kandinsky.default.mp4", tmp_path / "clip.starry-night.default.mp4"]
    assert [video.probe(o).frame_count for o in outputs] == [2, 2]

    log = (tmp_path / "jobs.log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", line) for line in log)
    assert log[-1].endswith("2 done, 1 failed")

    # An interrupted second entry (its last frame and output gone) resumes; the first is skipped.
    (tmp_path / "clip.starry-night.default.work" / "frames" / "000001.png").unlink()
    outputs[1].unlink()
    assert cli.main(["--job", path, "--quiet"]) == 1
    table = capsys.readouterr().err.split("#  entry")[1].splitlines()
    assert re.match(r"1\s+.*\s+skipped\s+-", table[1])
    assert re.match(r"2\s+.*\s+done\s+1/2", table[2])
    assert table[-1] == "1 done, 1 skipped, 1 failed"
    assert video.probe(outputs[1]).frame_count == 2
    assert (tmp_path / "jobs.log").read_text().count("#  entry") == 2  # appended, not replaced


def test_changed_entry_is_refused_then_restarted_alone(tmp_path, capsys):
    path = write_job(tmp_path, TINY + f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\nend = 1\n')
    log = tmp_path / "night.log"
    assert cli.main(["--job", path, "--quiet", "--log", log]) == 0
    path.write_text(path.read_text().replace("size = 64", "size = 48"))
    assert cli.main(["--job", path, "--quiet", "--log", log]) == 1
    assert "different render" in capsys.readouterr().err
    assert cli.main(["--job", path, "--quiet", "--log", log, "--restart"]) == 0
    assert video.probe(tmp_path / "realshort.kandinsky.default.mp4").width == 48
    assert log.is_file() and not (tmp_path / "jobs.log").exists()


def test_the_example_job_file_parses():
    entries = jobs.parse(REPO / "configs" / "examples" / "jobs.toml")
    assert len(entries) == 5 and all(e.job.video == REPO / "configs" / "examples" / "../../samples/realshort.mp4"
                                     for e in entries)


def test_sigint_stops_the_job_with_a_summary_and_130(tmp_path):
    import signal
    import subprocess
    import sys

    # Two evaluations for frame 1, so it makes an iteration to pause in: the device L-BFGS spends
    # a budget of one on its start.
    two = TINY.replace("\nframe_iterations = 1", "\nframe_iterations = 2")
    path = write_job(tmp_path, two + f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\n'
                                     'end = 3\noutput = "first.mp4"\n'
                                     f'[[render]]\nvideo = "{SAMPLE_CLIP}"\nstyle = "{SAMPLE_STYLE}"\nend = 3\n')
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "pause_at.py"), "optimize:1",
                                "--job", str(path), "--quiet"], cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in process.stderr:
        if "test-pause: optimize:1" in line:
            break
    else:
        raise AssertionError(f"exit {process.wait()} before the pause")
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 130, err
    table = err.split("#  entry")[1].splitlines()
    assert re.match(r"1\s+.*\s+stopped\s+1/3", table[1]) and re.match(r"2\s+.*\s+not run", table[2])
    assert "run the same command again to resume" in err.splitlines()[-1]
    assert "stopped" in (tmp_path / "jobs.log").read_text()


def test_an_entry_sets_a_sequences_rate_and_the_output_bit_depth(tmp_path):
    from fractions import Fraction

    path = write_job(tmp_path, '[[render]]\nvideo = "shot.%04d.png"\nstyle = "s.jpg"\noutput = "o.%04d.png"\n'
                               'fps = "24000/1001"\nbit_depth = 16\n'
                               '[[render]]\nvideo = "b.mp4"\nstyle = "s.jpg"\nfps = 23.976\n')
    first, second = (entry.job for entry in jobs.parse(path))
    assert (first.fps, first.bit_depth) == (Fraction(24000, 1001), 16)
    assert (second.fps, second.bit_depth) == (Fraction("23.976"), 8)


@pytest.mark.parametrize("line, problem", [("fps = 0", "fps 0 is not a frame rate"),
                                           ('fps = "fast"', "fps 'fast' is not a frame rate"),
                                           ("bit_depth = 12", "bit_depth 12 is not 8 or 16")])
def test_a_bad_rate_or_bit_depth_is_refused_naming_the_entry(tmp_path, line, problem):
    path = write_job(tmp_path, f'[[render]]\nvideo = "a.mp4"\nstyle = "s.jpg"\n{line}\n')
    with pytest.raises(InputError, match=problem):
        jobs.parse(path)
