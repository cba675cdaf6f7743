"""The command line end to end on the first frames of the real sample, at a tiny size."""
import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cli
from pipeline import video
from pipeline.images import load_rgb
from pipeline.workdir import Difference, DifferentRender

from conftest import REPO, SAMPLE_CLIP, SAMPLE_STYLE

FAST = ["--size", "64", "--first-frame-iterations", "4", "--frame-iterations", "2"]


def run(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Frames 2-4 of the sample rendered once through the real command line, in a subprocess."""
    out = tmp_path_factory.mktemp("cli") / "clip.mp4"
    command = [sys.executable, "cli.py", SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", out, "--start", 2, "--end", 5, *FAST]
    done = subprocess.run([str(c) for c in command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def test_output_keeps_frame_rate_and_sound_of_the_range(rendered):
    out, _ = rendered
    info = video.probe(out)
    assert info.frame_count == 3
    assert abs(float(info.fps) - 30.02) < 1e-3
    assert info.has_audio
    assert (info.width, info.height) == (64, 48)


def test_progress_bar_counts_evaluations_with_a_whole_clip_eta(rendered):
    _, stderr = rendered
    assert "frame 3/3" in stderr and ("eval/s" in stderr or "s/eval" in stderr)
    assert "wrote" in stderr.splitlines()[-1]


def test_compare_and_contact_sheet_through_the_command_line(rendered, capsys):
    """The preview aids from a finished render (no frame rendered again): a side-by-side video
    of the range with its sound, and a sheet of every second frame next to its source."""
    from pipeline.images import load_rgb

    out, _ = rendered
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", out, "--start", 2, "--end", 5, "--quiet", *FAST,
               "--assemble", "--compare", "--contact-sheet", 2) == 0
    err = capsys.readouterr().err
    compare_path, sheet_path = out.with_name("clip.compare.mp4"), out.with_name("clip.sheet.png")
    assert f"wrote {compare_path}" in err and f"wrote {sheet_path}" in err
    side_by_side = video.probe(compare_path)
    assert (side_by_side.frame_count, side_by_side.width, side_by_side.height) == (3, 128, 48)
    assert side_by_side.has_audio
    sheet = load_rgb(sheet_path)
    assert sheet.shape[0] > 48 and sheet.shape[1] >= 128  # two cells (frames 2 and 4), each source | stylized


def test_rerun_resumes_without_rendering_again(rendered, capsys):
    out, _ = rendered
    frames = sorted((out.parent / "clip.work" / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["000002.png", "000003.png", "000004.png"]
    before = [f.stat().st_mtime_ns for f in frames]
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", out, "--start", 2, "--end", 5, "--quiet", *FAST) == 0
    assert [f.stat().st_mtime_ns for f in frames] == before
    assert "3 already done" in capsys.readouterr().err


def test_changed_settings_are_refused_unless_restarted(rendered, tmp_path, capsys):
    finished, _ = rendered
    work, out = tmp_path / "work", tmp_path / "clip.mp4"
    shutil.copytree(finished.parent / "clip.work", work)
    args = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", out, "--workdir", work, "--start", 2, "--end", 3, "--quiet", *FAST]
    assert run(*args, "--style-weight", "3") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    # names exactly what differs, and says what --restart would destroy
    assert error.startswith("error:") and "settings.style_weight 10.0 -> 3.0" in error
    assert "holds 3 finished frame(s)" in error and "--restart deletes them" in error
    assert run(*args, "--style-weight", "3", "--restart") == 0
    assert video.probe(out).frame_count == 1


def test_image_sequence_output(tmp_path):
    pattern = tmp_path / "shot.%04d.png"
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", pattern, "--end", 2, "--quiet", *FAST) == 0
    frames = [load_rgb(tmp_path / f"shot.{i:04d}.png") for i in range(2)]
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    assert (tmp_path / "shot.work" / "manifest.json").is_file()


def test_eval_reports_stability_fidelity_and_per_frame_losses(rendered, tmp_path, capsys):
    out, _ = rendered
    report = tmp_path / "eval.json"
    assert run("eval", SAMPLE_CLIP, out.parent / "clip.work", "--json", report) == 0  # start: the first frame's
    captured = capsys.readouterr()
    assert "E_warp (deepflow) stylized" in captured.out and "flow floor" in captured.out
    assert "structure" in captured.out and captured.err == ""  # deepflow is not the render's flow: no warning
    result = json.loads(report.read_text())
    assert (result["estimator"], result["carry_flow"], result["start"]) == ("deepflow", "dis-medium", 2)
    assert result["frames"] == 3 and len(result["per_pair"]) == len(result["floor_per_pair"]) == 2
    assert result["stylized"] > 0 and result["source"] > 0 and result["flow_floor"] > 0
    assert len(result["structure_per_frame"]) == len(result["texture_energy_per_frame"]) == 3
    assert sorted(result["per_frame"]) == ["2", "3", "4"]
    assert {frame["stop_reason"] for frame in result["per_frame"].values()} <= {"budget", "converged"}


def test_eval_with_the_renders_own_flow_warns_in_one_line(rendered, capsys):
    out, _ = rendered
    assert run("eval", SAMPLE_CLIP, out.parent / "clip.work", "--flow", "dis-medium") == 0
    captured = capsys.readouterr()
    assert len(captured.err.splitlines()) == 1 and "flatters" in captured.err
    assert "E_warp (dis-medium) stylized" in captured.out


def test_eval_against_a_baseline(rendered, tmp_path, capsys):
    out, _ = rendered
    report = tmp_path / "eval.json"
    work = out.parent / "clip.work"
    assert run("eval", SAMPLE_CLIP, work, "--baseline", work, "--flow", "farneback", "--json", report) == 0
    captured = capsys.readouterr()
    assert "not a cold render" in captured.err and "cold baseline" in captured.out
    baseline = json.loads(report.read_text())["baseline"]
    assert baseline["structure_ratio"] == pytest.approx(1.0)
    assert baseline["content_style_ratio"] == pytest.approx(1.0) and baseline["evaluations_ratio"] == pytest.approx(1.0)
    assert run("eval", SAMPLE_CLIP, work, "--baseline", tmp_path) == 2  # holds none of the frames
    assert "--init cold" in capsys.readouterr().err


def test_eval_help_gives_the_cold_baseline_command(capsys):
    with pytest.raises(SystemExit):
        run("eval", "--help")
    assert "--init cold" in capsys.readouterr().out


def test_eval_of_a_missing_file_is_one_line(capsys):
    assert run("eval", SAMPLE_CLIP, "no/such/frames.%04d.png") == 2
    assert capsys.readouterr().err.startswith("error:")


def test_render_writes_a_report(rendered):
    out, _ = rendered
    html = (out.parent / "clip.work" / "report.html").read_text()
    assert "data:image/png;base64" in html and "E_warp" in html


def test_help_names_the_presets_and_the_eval_command(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "presets (--preset): default, final, preview" in text and "python cli.py eval SOURCE WORKDIR" in text


def test_the_log_names_the_device_that_renders():
    import tensorflow as tf

    from pipeline.devices import rendering_device

    line = rendering_device()
    assert rendering_device("auto") == f"{line}; optimizer lbfgs (auto)"
    assert rendering_device("adam") == f"{line}; optimizer adam"

    if tf.config.list_physical_devices("GPU"):
        assert line.startswith("rendering on ") and "CPU" not in line
    else:
        assert line.startswith("rendering on the CPU") and '".[gpu]"' in line


@pytest.mark.parametrize("differences, flags, kept", [
    ([Difference("settings.style_weight", 10.0, 99.0)], "--style-weight 10", None),
    ([Difference("style.sha256", "9f311e63873f", "8f992ed4aecd")], None, "the style"),
    ([Difference("settings.content_layers", ["block4_conv2"], ["block3_conv2", "block4_conv2"]),
      Difference("settings.optimizer", "lbfgs", "scipy-lbfgs"), Difference("size", [64, 48], [128, 96]),
      Difference("video.sha256", "1a", "2b")],
     "--content-layers block4_conv2 --optimizer lbfgs --size 64", "the video"),
    (["manifest.json is missing, so which render they belong to is unknown"], None, None),
])
def test_a_different_render_is_refused_with_how_to_continue_it(differences, flags, kept):
    """The refusal's advice names the flags that give the old settings back (and they parse), the
    inputs to keep, and the two other ways: render elsewhere, or over."""
    advice = cli.advice_for(DifferentRender(SAMPLE_CLIP.parent / "shot.work", differences, 3))
    assert advice.endswith("--workdir DIR renders elsewhere and keeps them; --restart deletes them and starts over)")
    assert (f"give the old values as flags ({flags})" in advice) == bool(flags)
    assert (f"keep {kept} it began with" in advice) == bool(kept)
    assert ("to continue it" in advice) == bool(flags or kept)
    if flags:  # as the user pastes them, they give the old values back
        parsed = vars(cli.build_parser().parse_args([str(SAMPLE_CLIP), "--style", str(SAMPLE_STYLE), *shlex.split(flags)]))
        old = {"style_weight": 10.0, "content_layers": "block4_conv2", "optimizer": "lbfgs", "size": 64}
        given = [name for name in old if parsed[name] is not None]
        assert given and all(parsed[name] == old[name] for name in given)
