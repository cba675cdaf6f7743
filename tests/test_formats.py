"""The compositor's formats: image sequences in (numbers kept, --fps), EXR / 16-bit PNG / ProRes out.

The sequences are made from the bundled sample at 64x48; renders are tiny and shared by module
fixtures (each costs tens of seconds).
"""
import re
import subprocess

import cv2
import numpy as np
import pytest

import cli
from pipeline import sequences, video
from pipeline.errors import InputError
from pipeline.images import save_rgb
from pipeline.workdir import WorkDir

from conftest import SAMPLE_CLIP, SAMPLE_STYLE

SIZE = (64, 48)
FAST = ["--size", "64", "--first-frame-iterations", "3", "--frame-iterations", "2", "--quiet"]


def run(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def sample_frames():
    info = video.probe(SAMPLE_CLIP)
    return list(video.read_frames(info, 0, 5, SIZE))


@pytest.fixture(scope="module")
def shots(tmp_path_factory, sample_frames):
    """The same five frames as a PPM folder, a 16-bit PNG sequence from 1001 and an EXR sequence from 1."""
    root = tmp_path_factory.mktemp("shots")
    (root / "ppm").mkdir()
    for position, frame in enumerate(sample_frames):
        assert cv2.imwrite(str(root / "ppm" / f"plate_{position:03d}.ppm"), frame[:, :, ::-1])
        save_rgb(root / f"deep.{1001 + position:04d}.png", frame.astype(np.uint16) * 257)
        sequences.write_exr(root / f"linear.{1 + position:04d}.exr", frame)
    return root


def ffmpeg_listing(path):
    return subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("name, first", [
    ("ppm", 0), ("deep.%04d.png", 1001), ("deep.####.png", 1001), ("linear.%04d.exr", 1), ("linear.####.exr", 1),
])
def test_sequences_read_as_the_frames_they_hold(shots, sample_frames, name, first):
    info = video.probe(shots / name)
    assert (info.first_number, info.frame_count, info.width, info.height) == (first, 5, 64, 48)
    assert info.fps == 24 and not info.has_audio
    for got, made in zip(video.read_frames(info, 0, 5, SIZE), sample_frames):
        assert got.dtype == np.uint8 and np.array_equal(got, made)  # 16 bit and linear EXR convert back exactly


def test_the_fps_of_a_sequence_is_given(shots):
    assert video.probe(shots / "ppm", 25).fps == 25


def test_linear_light_is_converted_to_srgb():
    assert np.allclose(sequences.linear_to_srgb(np.array([0.0, 0.0031308, 0.214041, 1.0, 4.0, -1.0])),
                       [0.0, 0.04045, 0.5, 1.0, 1.0, 0.0], atol=1e-4)
    values = np.linspace(0, 1, 256)
    assert np.allclose(sequences.linear_to_srgb(sequences.srgb_to_linear(values)), values)


def test_missing_numbers_are_named(shots, tmp_path):
    for number in (1001, 1002, 1004, 1005, 1006, 1009):
        (tmp_path / f"gap.{number}.png").write_bytes((shots / "deep.1001.png").read_bytes())
    with pytest.raises(InputError, match=r"gap\.%04d\.png: frames 1003, 1007-1008 are missing"):
        video.probe(tmp_path / "gap.%04d.png")


def test_a_folder_of_two_sequences_is_refused(shots, tmp_path):
    for name in ("a.0001.png", "a.0002.png", "b.0001.png"):
        (tmp_path / name).write_bytes((shots / "deep.1001.png").read_bytes())
    with pytest.raises(InputError, match="more than one numbered sequence"):
        video.probe(tmp_path)


def test_missing_numbers_on_the_command_line_are_one_error_line(shots, tmp_path, capsys):
    for number in (1001, 1003):
        (tmp_path / f"gap.{number}.png").write_bytes((shots / "deep.1001.png").read_bytes())
    assert run(tmp_path / "gap.####.png", "--style", SAMPLE_STYLE, "-o", tmp_path / "out.mp4", *FAST) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {tmp_path}/gap.####.png: frame 1002 is missing"


@pytest.mark.parametrize("flags, problem", [
    (["--fps", "25"], "fps is for image-sequence inputs"),
    (["--bit-depth", "16"], "--bit-depth 16 writes PNG or TIFF sequences"),
])
def test_format_options_that_do_not_apply_are_refused(tmp_path, capsys, flags, problem):
    assert run(SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", tmp_path / "out.mp4", *flags, *FAST) == 2
    assert problem in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_start_before_a_sequences_first_number_is_refused(shots, tmp_path, capsys):
    assert run(shots / "deep.%04d.png", "--style", SAMPLE_STYLE, "-o", tmp_path / "o.%04d.png", "--start", 0, *FAST) == 2
    assert "start 0 is before the first frame (the clip has 5 frames, 1001-1005)" in capsys.readouterr().err


# ---------------------------------------------------------------- renders


@pytest.fixture(scope="module")
def deep_render(shots, tmp_path_factory):
    """Frames 1002-1003 of the 16-bit sequence rendered once, written as EXR, 16-bit PNG and ProRes."""
    out = tmp_path_factory.mktemp("deep_out")
    common = [shots / "deep.%04d.png", "--style", SAMPLE_STYLE, "--start", 1002, "--end", 1004,
              "--workdir", out / "shot.work", *FAST]
    assert run(*common, "-o", out / "shot.%04d.exr") == 0
    assert run(*common, "-o", out / "shot16.%04d.png", "--bit-depth", 16) == 0  # same frames, no new render
    assert run(*common, "-o", out / "shot.mov") == 0
    return out


def test_outputs_keep_the_sequences_frame_numbers(deep_render):
    assert sorted(p.name for p in deep_render.glob("shot.*.exr")) == ["shot.1002.exr", "shot.1003.exr"]
    assert sorted(p.name for p in deep_render.glob("shot16.*.png")) == ["shot16.1002.png", "shot16.1003.png"]
    assert sorted(p.name for p in (deep_render / "shot.work" / "frames").glob("*.png")) == ["000001.png", "000002.png"]


def test_exr_output_is_half_float_linear_light_of_the_frames(deep_render):
    exr = deep_render / "shot.1002.exr"
    assert sequences.exr_channel_types(exr) == {"B": "half", "G": "half", "R": "half"}
    stored = WorkDir(deep_render / "shot.work").load16(1)
    linear = sequences.read_exr(exr)
    assert linear.shape == (48, 64, 3)
    assert np.allclose(linear, sequences.srgb_to_linear(stored / 65535.0), atol=1e-3)  # half precision
    # An EXR of an 8-bit frame holds at most 256 values, one per level: this one is the float result.
    assert len(np.unique(linear)) > 256


def test_16_bit_png_output_is_the_float_result_not_8_bit_scaled(deep_render):
    deep = cv2.imread(str(deep_render / "shot16.1003.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (48, 64, 3)
    assert np.array_equal(deep[:, :, ::-1], WorkDir(deep_render / "shot.work").load16(2))
    assert (deep % 257 != 0).mean() > 0.5  # 8 bits scaled would be multiples of 257 only
    assert len(np.unique(deep)) > 256


def test_prores_output_is_422_hq_at_the_given_rate(deep_render):
    listing = ffmpeg_listing(deep_render / "shot.mov")
    stream = next(line for line in listing.splitlines() if "Video:" in line)
    assert "prores" in stream and "(HQ)" in stream and "yuv422p10le" in stream
    assert re.search(r"\b24 fps\b", stream)
    assert "Audio:" not in listing  # a sequence has no sound
    assert video.probe(deep_render / "shot.mov").frame_count == 2
    assert not (deep_render / "shot.work" / "final").exists()  # the 8-bit copy it was encoded from is gone


def test_a_ppm_folder_renders_at_its_fps_with_numbers_from_its_files(shots, tmp_path, capsys):
    out = tmp_path / "plate.%03d.exr"
    assert run(shots / "ppm", "--style", SAMPLE_STYLE, "-o", out, "--fps", "25", "--end", 2, *FAST) == 0
    assert f"{shots / 'ppm'}: image sequence at 25 fps (--fps)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("plate.*.exr")) == ["plate.000.exr", "plate.001.exr"]
    assert run(shots / "ppm", "--style", SAMPLE_STYLE, "-o", tmp_path / "plate.mov", "--fps", "25", "--end", 2,
               "--workdir", tmp_path / "plate.work", *FAST) == 0
    assert re.search(r"\b25 fps\b", ffmpeg_listing(tmp_path / "plate.mov"))


def test_eval_reads_a_sequence_source_and_an_exr_result(shots, deep_render, capsys):
    # eval's --start is a position in the source: plate frame 1002 is position 1
    assert run("eval", shots / "deep.%04d.png", deep_render / "shot.%04d.exr", "--start", 1, "--flow", "farneback") == 0
    assert "E_warp" in capsys.readouterr().out
