"""User mistakes on the command line: one `error: ...` line on stderr, exit 2, no traceback.

Every case runs `cli.py` as a subprocess, as an artist would (each pays ~5 s of TensorFlow
import), with a budget so small that a case which does reach rendering finishes in a second.
A few image formats are checked in-process through load_rgb; two of them also end to end.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline import images, video

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VIDEO = REPO / "samples" / "realshort.mp4"  # 36 frames, 320x240, with sound
SAMPLE_STYLE = REPO / "samples" / "kandinsky.jpg"
# Appended before each case's own flags, so a case's --end/--size/-o (argparse: last wins) rules.
TINY_BUDGET = ["--end", "1", "--first-frame-iterations", "2", "--frame-iterations", "2", "--size", "64", "--quiet"]
# Lines TensorFlow/absl/OpenCV/libav write on their own; none may follow our error line.
NOISE_PREFIXES = ("WARNING: All log messages", "I0000", "W0000", "E0000", "[ WARN", "[ERROR", "[mov,")


# ---------------------------------------------------------------- helpers


def run_cli(*args: str | os.PathLike, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, errors="replace", timeout=300,
    )


def run_job(tmp: Path, video_path, style=SAMPLE_STYLE, *extra) -> subprocess.CompletedProcess:
    """A render of `video_path` into tmp/out.mp4 at the tiny budget; `extra` overrides."""
    return run_cli(video_path, "--style", style, "-o", tmp / "out.mp4", *TINY_BUDGET, *extra)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str | os.PathLike) -> str:
    """Exit 2, no traceback, and the last stderr line is our one `error:` line naming `needles`."""
    report = f"exit {result.returncode}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 2, report
    assert "Traceback" not in result.stderr, report
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, report
    last = lines[-1]
    assert last.startswith("error: "), f"last stderr line is not ours (noise after it?)\n{report}"
    assert sum(line.startswith("error:") for line in lines) == 1, report
    assert not last.startswith(NOISE_PREFIXES)
    for needle in needles:
        assert str(needle) in last, f"{needle!r} not named in {last!r}"
    return last


def assert_rendered(result: subprocess.CompletedProcess, output: Path, frames: int = 1) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert output.is_file() and output.stat().st_size > 0
    assert video.probe(output).frame_count == frames


def assert_nothing_written(directory: Path, *allowed: str) -> None:
    """No output and no work directory (whatever its naming) appeared in `directory`."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(allowed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Broken videos and styles, and the odd-but-valid styles that must work."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "a_directory.mp4").mkdir()
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n")
    (root / "text.jpg").write_text("not an image\n")
    (root / "somefile.txt").write_text("a file, not a directory\n")
    data = SAMPLE_VIDEO.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index at the end: cut off
    ffmpeg = video.ffmpeg_exe()
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(SAMPLE_VIDEO),
                    "-c", "copy", "-movflags", "+faststart", str(root / "faststart.mp4")], check=True)
    data = (root / "faststart.mp4").read_bytes()
    (root / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])  # index kept, samples cut
    subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(root / "audio_only.mp4")], check=True)

    style = Image.open(SAMPLE_STYLE).convert("RGB").resize((96, 72))
    style.convert("L").save(root / "gray.jpg")
    rgba = np.array(style.convert("RGBA"))
    rgba[:, :48, 3] = 0  # left half transparent
    Image.fromarray(rgba).save(root / "rgba.png")
    bgr16 = np.array(style)[:, :, ::-1].astype(np.uint16) * 257
    cv2.imwrite(str(root / "rgb16.png"), np.ascontiguousarray(bgr16))
    alpha16 = np.full(bgr16.shape[:2], 65535, np.uint16)
    alpha16[:, :48] = 32768  # half transparent on the left
    cv2.imwrite(str(root / "rgba16.png"), np.dstack([bgr16, alpha16]))
    style.convert("CMYK").save(root / "cmyk.jpg")
    style.resize((8, 8)).convert("L").save(root / "tiny_gray.png")
    return root


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "file not found"),
    ("a_directory.mp4", "is a directory"),
    ("empty.mp4", "empty"),
    ("text.mp4", "not a video"),
    ("truncated.mp4", "cannot be decoded"),
    ("truncated_faststart.mp4", "of 36 frames decode"),
    ("audio_only.mp4", "no video stream"),
])
def test_bad_video(files, tmp_path, name, problem):
    assert_user_error(run_job(tmp_path, files / name), files / name, problem)
    assert_nothing_written(tmp_path)


# ---------------------------------------------------------------- frame range


@pytest.mark.parametrize("range_flags, named", [
    (["--start", "100", "--end", "101"], "100"),
    (["--start", "100"], "100"),  # --end from TINY_BUDGET is overridden below
    (["--start", "5", "--end", "5"], "5"),
    (["--start", "-1"], "-1"),
])
def test_bad_frame_range(tmp_path, range_flags, named):
    flags = range_flags if "--end" in range_flags else [*range_flags, "--end", "36"]
    last = assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, *flags), SAMPLE_VIDEO, named)
    assert "36 frames" in last
    assert_nothing_written(tmp_path)


# ---------------------------------------------------------------- style


@pytest.mark.parametrize("name, problem", [("missing.jpg", "file not found"), ("text.jpg", "not an image")])
def test_bad_style(files, tmp_path, name, problem):
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, files / name), files / name, problem)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("second, named", [
    ("missing.jpg:0.3", "missing.jpg: file not found"),
    (f"{SAMPLE_STYLE}:-0.3", "style weight -0.3 must be"),
])
def test_bad_style_in_a_blend(files, tmp_path, second, named):
    """A blend's second painting is checked like the first, before anything is written."""
    result = run_cli(SAMPLE_VIDEO, "--style", f"{SAMPLE_STYLE}:0.7", "--style", second, "-o", tmp_path / "out.mp4",
                     *TINY_BUDGET)
    assert_user_error(result, named)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("name, check", [
    ("gray.jpg", lambda rgb: np.array_equal(rgb[:, :, 0], rgb[:, :, 2])),
    ("rgba.png", lambda rgb: rgb[:, :48].min() == 255),  # transparent reads as white
    ("rgb16.png", lambda rgb: True),
    ("rgba16.png", lambda rgb: rgb[:, :48].mean() > rgb[:, 48:].mean()),  # half way to white
    ("cmyk.jpg", lambda rgb: True),
    ("tiny_gray.png", lambda rgb: rgb.shape == (8, 8, 3)),
])
def test_odd_style_images_load(files, name, check):
    rgb = images.load_rgb(files / name)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert check(rgb)
    if name == "rgb16.png":  # exactly the 8-bit source it was widened from
        assert np.array_equal(rgb, np.array(Image.open(SAMPLE_STYLE).convert("RGB").resize((96, 72))))
    if name == "cmyk.jpg":  # the colours Pillow decodes, not inverted or channel-swapped
        reference = np.array(Image.open(files / name).convert("RGB"), dtype=float)
        assert np.abs(rgb - reference).mean() < 3


@pytest.mark.parametrize("name", ["rgba16.png", "tiny_gray.png"])
def test_odd_style_renders(files, tmp_path, name):
    """End to end: 16-bit with alpha, and an 8x8 grayscale smaller than VGG16's minimum."""
    assert_rendered(run_job(tmp_path, SAMPLE_VIDEO, files / name), tmp_path / "out.mp4")


def test_long_thin_style_renders_cut_down_with_one_warning(tmp_path):
    """16x16000: VGG16's 32 px short side alone would make it 32x32000 (2 GB); it is capped."""
    style = tmp_path / "thin.png"
    cv2.imwrite(str(style), np.random.default_rng(0).integers(0, 256, (16, 16000, 3), np.uint8))
    result = run_job(tmp_path, SAMPLE_VIDEO, style)
    assert_rendered(result, tmp_path / "out.mp4")
    cut_down = [line for line in result.stderr.splitlines() if line.startswith("warning:") and "16000x16" in line]
    assert len(cut_down) == 1 and "cut down to 384x32" in cut_down[0], result.stderr


# ---------------------------------------------------------------- output


def test_output_under_a_file(files, tmp_path):
    output = files / "somefile.txt" / "out.mp4"
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "-o", output), files / "somefile.txt")
    assert (files / "somefile.txt").is_file()


def test_output_equal_to_input_is_refused(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(SAMPLE_VIDEO.read_bytes())
    before = sha256(clip)
    # Spelled differently from the input path, and run from elsewhere: resolved, not compared as text.
    assert_user_error(run_cli(clip, "--style", SAMPLE_STYLE, *TINY_BUDGET, "-o", "../" + tmp_path.name + "/clip.mp4",
                              cwd=tmp_path), "clip.mp4", "overwrite the input")
    assert sha256(clip) == before
    assert_nothing_written(tmp_path, "clip.mp4")


def test_output_in_missing_directory(tmp_path):
    output = tmp_path / "no_such_dir" / "out.mp4"
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "-o", output), tmp_path / "no_such_dir",
                      "does not exist")
    assert_nothing_written(tmp_path)


def test_output_format_that_cannot_hold_the_video(tmp_path):
    output = tmp_path / "out.webm"
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "-o", output), output, "unsupported output format")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("role, name", [
    ("video", "loop.mp4"),
    ("video-default-output", "loop"),  # python cli.py loop --style s.jpg: the output goes beside it
    ("style", "loop.jpg"),
    ("output", "loop"),
    ("output", "loop.mp4"),
])
def test_symlink_loop_is_a_user_error(tmp_path, role, name):
    loop = tmp_path / name
    loop.symlink_to(name)  # ln -s loop loop
    if role == "video-default-output":
        result = run_cli(loop, "--style", SAMPLE_STYLE, *TINY_BUDGET)
    else:
        paths = {"video": SAMPLE_VIDEO, "style": SAMPLE_STYLE, "output": tmp_path / "out.mp4", role: loop}
        result = run_cli(paths["video"], "--style", paths["style"], "-o", paths["output"], *TINY_BUDGET)
    assert_user_error(result, loop, "symbolic link")
    assert_nothing_written(tmp_path, name)


def test_finished_frames_survive_a_refused_rerun(tmp_path):
    """A render, then the same output with a changed setting: refused, and nothing is lost."""
    output, work = tmp_path / "out.mp4", tmp_path / "work"
    assert_rendered(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "--workdir", work), output)
    frame = work / "frames" / "000000.png"
    rendered = (sha256(frame), sha256(output))
    result = run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "--workdir", work, "--style-weight", "99")
    assert_user_error(result, work, "different render", "settings.style_weight 10.0 -> 99.0", "give the old values as flags (--style-weight 10)", "--restart")
    assert (sha256(frame), sha256(output)) == rendered


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("flags, named", [
    (["--preset", "no-such-preset"], "no-such-preset"),
    (["--optimizer", "foo"], "'foo'"),
    (["--init", "bogus"], "'bogus'"),
])
def test_bad_setting(tmp_path, flags, named):
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, *flags), named)
    assert_nothing_written(tmp_path)


def test_job_file_keeps_tensorflows_start_up_lines_quiet(tmp_path):
    job = tmp_path / "jobs.toml"
    job.write_text(f"size = 64\nfirst_frame_iterations = 2\nframe_iterations = 2\n[[render]]\n"
                   f"video = '{SAMPLE_VIDEO}'\nstyle = '{SAMPLE_STYLE}'\noutput = 'out.mp4'\nend = 1\n")
    result = run_cli("--job", job, "--quiet")
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if line.startswith(NOISE_PREFIXES)]
    assert not noise, result.stderr
    assert (tmp_path / "out.mp4").is_file()


def test_malformed_flag_value(tmp_path):
    assert_user_error(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "--size", "abc"), "--size", "'abc'")


# ---------------------------------------------------------------- odd but valid clips


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory) -> Path:
    """A one-frame clip, a 65x49 one, and a variable-frame-rate one (10 frames at 30 fps, then 8 at 10)."""
    root = tmp_path_factory.mktemp("odd_clips")

    def ffmpeg(*args):
        subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                       check=True, cwd=root)

    ffmpeg("-i", SAMPLE_VIDEO, "-frames:v", "1", "one_frame.mp4")
    ffmpeg("-i", SAMPLE_VIDEO, "-frames:v", "2", "-vf", "scale=65:49", "-c:v", "libx264rgb", "odd_size.mkv")
    ffmpeg("-i", SAMPLE_VIDEO, "-frames:v", "10", "-an", "-r", "30", "fast.mp4")
    ffmpeg("-ss", "0.5", "-i", SAMPLE_VIDEO, "-frames:v", "8", "-an", "-vf", "fps=10", "slow.mp4")
    (root / "parts.txt").write_text("file fast.mp4\nfile slow.mp4\n")
    ffmpeg("-f", "concat", "-safe", "0", "-i", "parts.txt", "-c", "copy", "vfr.mp4")
    return root


def test_one_frame_clip_renders(odd_clips, tmp_path):
    assert_rendered(run_job(tmp_path, odd_clips / "one_frame.mp4", SAMPLE_STYLE, "--end", "36"), tmp_path / "out.mp4")


def test_odd_sized_clip_renders_at_even_size(odd_clips, tmp_path):
    """65x49 at --size 0 (source size): H.264 needs even sides, so 64x48, never upscaled."""
    output = tmp_path / "out.mp4"
    assert_rendered(run_job(tmp_path, odd_clips / "odd_size.mkv", SAMPLE_STYLE, "--size", "0", "--end", "2"), output, 2)
    info = video.probe(output)
    assert (info.width, info.height) == (64, 48)


def test_variable_frame_rate_clip_keeps_frame_count_and_duration(odd_clips, tmp_path):
    """Every decoded frame is rendered once, at the clip's average rate (the timing inside is evened out)."""
    source = video.probe(odd_clips / "vfr.mp4")
    output = tmp_path / "out.mp4"
    result = run_job(tmp_path, odd_clips / "vfr.mp4", SAMPLE_STYLE, "--end", "100", "--first-frame-iterations", "1",
                     "--frame-iterations", "1")
    assert_rendered(result, output, source.frame_count)
    assert video.probe(output).fps == source.fps


def test_end_past_the_last_frame_renders_to_the_last_frame(tmp_path):
    output = tmp_path / "out.mp4"
    assert_rendered(run_job(tmp_path, SAMPLE_VIDEO, SAMPLE_STYLE, "--start", "34", "--end", "1000"), output, 2)
