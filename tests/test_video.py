"""pipeline.video on the sample clip and on small clips made here with the bundled ffmpeg."""

from __future__ import annotations

import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import video
from pipeline.errors import InputError
from pipeline.images import save_rgb

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "realshort.mp4"
SAMPLE_FPS = 30.02
SAMPLE_FRAMES = 36
MARKER = 12  # side of the coloured corner squares in the marker clip


def ffmpeg(*args: str | os.PathLike) -> str:
    """Run the bundled ffmpeg; return its stderr (the stream listing for `-i` alone)."""
    command = [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True).stderr


def _seconds(hours: str, minutes: str, seconds: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def container_duration_s(path: Path) -> float:
    """The "Duration:" ffmpeg prints for the file (the longest of its streams)."""
    return _seconds(*re.search(r"Duration: (\d+):(\d+):([\d.]+)", ffmpeg("-i", path)).groups())


def audio_duration_s(path: Path) -> float:
    """Length of the audio alone: the last "time=" of decoding just that stream."""
    log = ffmpeg("-i", path, "-map", "0:a", "-f", "null", "-")
    return _seconds(*re.findall(r"time=(\d+):(\d+):([\d.]+)", log)[-1])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """64x48 landscape clip, red top-left and blue bottom-right, plus rotated copies."""
    folder = tmp_path_factory.mktemp("clips")
    for index in range(5):
        rgb = np.full((48, 64, 3), 80, np.uint8)
        rgb[:MARKER, :MARKER] = (255, 0, 0)
        rgb[-MARKER:, -MARKER:] = (0, 0, 255)
        save_rgb(folder / f"marker_{index:03d}.png", rgb)
    ffmpeg("-framerate", "30", "-i", folder / "marker_%03d.png", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", folder / "landscape.mp4")
    for degrees in ("90", "-90", "180"):
        # -display_rotation is counter-clockwise, as ffmpeg's display matrix
        ffmpeg("-display_rotation", degrees, "-i", folder / "landscape.mp4", "-c", "copy",
               folder / f"display{degrees}.mp4")
    return folder


@pytest.fixture(scope="module")
def sample() -> video.VideoInfo:
    return video.probe(SAMPLE)


# ---------------------------------------------------------------- probe


def test_probe_reads_the_sample_exactly(sample):
    assert (sample.width, sample.height) == (320, 240)
    assert sample.frame_count == SAMPLE_FRAMES
    assert isinstance(sample.fps, Fraction)
    assert abs(float(sample.fps) - SAMPLE_FPS) < 1e-3
    assert sample.rotation == 0
    assert sample.has_audio


def test_probe_without_audio(clips):
    info = video.probe(clips / "landscape.mp4")
    assert not info.has_audio
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 5, 30)


def test_frame_count_falls_back_to_decoding_when_container_has_none(tmp_path):
    # A raw H.264 stream has no index: OpenCV reports a huge negative count for it.
    raw = tmp_path / "raw.h264"
    ffmpeg("-i", SAMPLE, "-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", raw)
    assert cv2.VideoCapture(str(raw), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    assert video.probe(raw).frame_count == SAMPLE_FRAMES


# newtonscradle.gif's timing: 36 frames of 20 to 50 ms, 0.82 s, which ffmpeg estimates at 50 fps (0.72 s)
VFR_GIF_MS = [50, *[20] * 8, 40, *[20] * 8] * 2


@pytest.fixture(scope="module")
def vfr_gif(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("gif") / "vfr.gif"
    # (17 * i) % 256 differs for every i < 256, so Pillow merges no frames
    shades = [Image.fromarray(np.full((48, 64, 3), 17 * i % 256, np.uint8)) for i in range(len(VFR_GIF_MS))]
    shades[0].save(path, save_all=True, append_images=shades[1:], duration=VFR_GIF_MS, loop=0)
    return path


def test_variable_rate_gif_probes_at_its_average_rate(vfr_gif):
    info = video.probe(vfr_gif)
    source_s = sum(VFR_GIF_MS) / 1000
    assert info.frame_count == len(VFR_GIF_MS)
    assert abs(info.frame_count / info.fps - source_s) < 1 / info.fps


def test_variable_rate_gif_encodes_to_its_own_duration(vfr_gif, tmp_path):
    info = video.probe(vfr_gif)
    for index, rgb in enumerate(video.read_frames(info, 0, info.frame_count, (64, 48))):
        save_rgb(tmp_path / f"frame_{index:05d}.png", rgb)
    output = tmp_path / "out.mp4"
    video.encode_video(str(tmp_path / "frame_%05d.png"), 0, info.frame_count, output, info.fps)
    assert container_duration_s(output) == pytest.approx(sum(VFR_GIF_MS) / 1000, abs=float(1 / info.fps))


# where the red top-left corner of the landscape source must end up
@pytest.mark.parametrize(
    "name, rotation, red_corner",
    [
        ("landscape", 0, "top-left"),
        ("display90", 270, "bottom-left"),  # counter-clockwise quarter turn
        ("display-90", 90, "top-right"),  # phone convention "rotate=90": clockwise
        ("display180", 180, "bottom-right"),
    ],
)
def test_rotated_clip_comes_out_upright(clips, name, rotation, red_corner):
    info = video.probe(clips / f"{name}.mp4")
    assert info.rotation == rotation
    portrait = rotation in (90, 270)
    assert (info.width, info.height) == ((48, 64) if portrait else (64, 48))
    frame = next(video.read_frames(info, 0, 1, (info.width, info.height)))
    assert frame.shape == (info.height, info.width, 3)
    corners = {"top-left": frame[2, 2], "top-right": frame[2, -3],
               "bottom-left": frame[-3, 2], "bottom-right": frame[-3, -3]}
    assert corners[red_corner][0] > 200 and corners[red_corner][1:].max() < 60


@pytest.mark.parametrize("name", ["display90", "display-90", "display180"])
def test_rotation_matches_ffmpegs_own_autorotation(clips, tmp_path, name):
    reference = tmp_path / "ffmpeg.png"
    ffmpeg("-i", clips / f"{name}.mp4", "-frames:v", "1", reference)
    expected = cv2.imread(str(reference))[:, :, ::-1]
    info = video.probe(clips / f"{name}.mp4")
    frame = next(video.read_frames(info, 0, 1, (info.width, info.height)))
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected).mean() < 3


def _bad_inputs(folder: Path) -> dict[str, Path]:
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video\n")
    (folder / "a directory.mp4").mkdir()
    data = SAMPLE.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index at the end: lost
    faststart = folder / "faststart.mp4"
    ffmpeg("-i", SAMPLE, "-c", "copy", "-movflags", "+faststart", faststart)
    (folder / "truncated_faststart.mp4").write_bytes(faststart.read_bytes()[: len(data) // 2])
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", "-c:a", "aac", folder / "audio_only.mp4")
    (folder / "loop.mp4").symlink_to("loop.mp4")  # ln -s loop.mp4 loop.mp4
    return {name: folder / name for name in (
        "missing.mp4", "empty.mp4", "text.mp4", "a directory.mp4", "truncated.mp4",
        "truncated_faststart.mp4", "audio_only.mp4", "loop.mp4")}


@pytest.mark.parametrize("name, problem", [
    ("missing.mp4", "not found"),
    ("empty.mp4", "empty"),
    ("text.mp4", "not a video"),
    ("a directory.mp4", "directory"),
    ("truncated.mp4", "truncated"),
    ("truncated_faststart.mp4", "truncated"),
    ("audio_only.mp4", "no video stream"),
    ("loop.mp4", "symbolic link loop"),
])
def test_bad_video_is_refused_naming_the_file(tmp_path, name, problem):
    path = _bad_inputs(tmp_path)[name]
    with pytest.raises(InputError) as error:
        video.probe(path)
    message = str(error.value)
    assert message.startswith(f"{path}:") and problem in message and "\n" not in message


# ---------------------------------------------------------------- output_size


def _info(width: int, height: int) -> video.VideoInfo:
    return video.VideoInfo(Path("clip.mp4"), width, height, Fraction(30), 10, 0, False)


@pytest.mark.parametrize("source, long_side, expected", [
    ((1920, 1080), 512, (512, 288)),
    ((1080, 1920), 512, (288, 512)),  # portrait keeps its long side vertical
    ((1920, 1080), 500, (500, 282)),  # 281.25 rounds to the nearest even number
    ((320, 240), 1000, (320, 240)),  # never upscale
    ((320, 240), None, (320, 240)),
    ((320, 240), 0, (320, 240)),
    ((321, 241), None, (320, 240)),  # odd source: even, and not above the source
    ((1280, 720), 641, (640, 360)),
])
def test_output_size(source, long_side, expected):
    width, height = video.output_size(_info(*source), long_side)
    assert (width, height) == expected
    assert width % 2 == 0 and height % 2 == 0


@pytest.mark.parametrize("source, long_side", [((40, 30), None), ((320, 240), 40)])
def test_output_size_refuses_below_vgg_minimum(source, long_side):
    with pytest.raises(InputError, match=r"^clip\.mp4: .*32 px"):
        video.output_size(_info(*source), long_side)


# ---------------------------------------------------------------- read_frames


def test_read_frames_range_matches_sequential_decode(sample):
    everything = list(video.read_frames(sample, 0, SAMPLE_FRAMES, (320, 240)))
    assert len(everything) == SAMPLE_FRAMES
    middle = list(video.read_frames(sample, 10, 20, (320, 240)))
    assert len(middle) == 10
    for got, expected in zip(middle, everything[10:20]):
        assert np.array_equal(got, expected)
    last = list(video.read_frames(sample, SAMPLE_FRAMES - 1, SAMPLE_FRAMES, (320, 240)))
    assert np.array_equal(last[0], everything[-1])


def test_read_frames_gives_resized_rgb_uint8(clips, sample):
    frames = list(video.read_frames(sample, 0, 3, (160, 120)))
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
    info = video.probe(clips / "landscape.mp4")
    red = next(video.read_frames(info, 0, 1, (64, 48)))[2, 2]
    assert red[0] > 200 and red[1:].max() < 60  # RGB order, not OpenCV's BGR


@pytest.mark.parametrize("start, end, problem", [
    (5, 5, "empty"), (7, 3, "empty"), (-1, 3, "negative"),
    (30, SAMPLE_FRAMES + 1, "past the end"), (SAMPLE_FRAMES, SAMPLE_FRAMES + 2, "past the end"),
])
def test_read_frames_refuses_bad_range_at_call_time(sample, start, end, problem):
    with pytest.raises(InputError, match=problem) as error:
        video.read_frames(sample, start, end, (320, 240))  # not iterated: fails on the call
    assert str(error.value).startswith(f"{SAMPLE}:")


# ---------------------------------------------------------------- encode_video


@pytest.fixture(scope="module")
def frames(sample, tmp_path_factory) -> Path:
    """PNG frames 0..35 of the sample at 160x120, as the renderer would leave them."""
    folder = tmp_path_factory.mktemp("frames")
    for index, rgb in enumerate(video.read_frames(sample, 0, SAMPLE_FRAMES, (160, 120))):
        save_rgb(folder / f"frame_{index:05d}.png", rgb)
    return folder


def test_encode_keeps_rate_count_and_trims_the_sound(frames, sample, tmp_path):
    output = tmp_path / "out.mp4"
    video.encode_video(str(frames / "frame_%05d.png"), 6, 12, output, sample.fps,
                       audio_from=SAMPLE, audio_start_frame=6)
    info = video.probe(output)
    assert (info.width, info.height, info.frame_count) == (160, 120, 12)
    assert abs(float(info.fps) - SAMPLE_FPS) < 1e-3
    assert info.has_audio
    expected_s = 12 / SAMPLE_FPS
    assert container_duration_s(output) == pytest.approx(expected_s, abs=0.03)
    assert audio_duration_s(output) == pytest.approx(expected_s, abs=0.03)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no partial file left


def test_encoded_frames_are_the_given_frames(frames, sample, tmp_path):
    output = tmp_path / "out.mp4"
    video.encode_video(str(frames / "frame_%05d.png"), 20, 3, output, sample.fps)
    decoded = list(video.read_frames(video.probe(output), 0, 3, (160, 120)))
    for index, got in enumerate(decoded, start=20):
        expected = cv2.imread(str(frames / f"frame_{index:05d}.png"))[:, :, ::-1]
        assert np.abs(got.astype(int) - expected).mean() < 4  # crf 18: close, not lossless


def test_encode_chroma_is_chosen_and_444_keeps_colour_closer(frames, sample, tmp_path):
    expected = cv2.imread(str(frames / "frame_00020.png"))[:, :, ::-1]
    errors = {}
    for chroma, pixel_format in (("4:2:0", "yuv420p"), ("4:4:4", "yuv444p")):
        output = tmp_path / f"{pixel_format}.mp4"
        video.encode_video(str(frames / "frame_%05d.png"), 20, 3, output, sample.fps, chroma=chroma)
        streams = [line for line in video._stream_lines(video._ffmpeg_listing(output)) if "Video:" in line]
        assert pixel_format in streams[0]
        decoded = next(iter(video.read_frames(video.probe(output), 0, 1, (160, 120))))
        errors[chroma] = np.abs(cv2.cvtColor(decoded, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(int)
                                - cv2.cvtColor(expected, cv2.COLOR_RGB2YCrCb)[..., 1:]).mean()
    assert errors["4:4:4"] < 0.8 * errors["4:2:0"], errors


def test_encode_without_sound_in_the_source(frames, clips, sample, tmp_path):
    for audio_from in (None, clips / "landscape.mp4"):
        output = tmp_path / "silent.mp4"
        video.encode_video(str(frames / "frame_%05d.png"), 0, 5, output, sample.fps,
                           audio_from=audio_from)
        info = video.probe(output)
        assert info.frame_count == 5 and not info.has_audio


def test_encode_crops_odd_sizes_to_even(tmp_path):
    for index in range(3):
        save_rgb(tmp_path / f"odd_{index}.png", np.full((33, 45, 3), 128, np.uint8))
    output = tmp_path / "odd.mp4"
    video.encode_video(str(tmp_path / "odd_%d.png"), 0, 3, output, Fraction(30000, 1001))
    info = video.probe(output)
    assert (info.width, info.height, info.frame_count) == (44, 32, 3)
    assert info.fps == Fraction(30000, 1001)


def test_encode_refuses_missing_output_directory(frames, sample, tmp_path):
    for directory in (tmp_path / "nowhere", frames / "frame_00000.png"):  # absent, or a file
        with pytest.raises(InputError, match=r"output directory does not exist") as error:
            video.encode_video(str(frames / "frame_%05d.png"), 0, 3, directory / "o.mp4",
                               sample.fps)
        assert str(error.value).startswith(f"{directory}:")


def test_encode_refuses_unwritable_output_directory(frames, sample, tmp_path, monkeypatch):
    # Root ignores permission bits, so the check itself is driven through os.access here.
    monkeypatch.setattr(video.os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path))}: .*not writable"):
        video.encode_video(str(frames / "frame_%05d.png"), 0, 3, tmp_path / "o.mp4",
                           sample.fps)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_encode_refuses_read_only_directory(frames, sample, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(InputError, match="not writable"):
        video.encode_video(str(frames / "frame_%05d.png"), 0, 3, locked / "o.mp4", sample.fps)


def test_encode_names_a_missing_frame(frames, sample, tmp_path):
    with pytest.raises(InputError, match=r"frame_00040\.png: frame to encode is missing"):
        video.encode_video(str(frames / "frame_%05d.png"), 30, 11, tmp_path / "o.mp4",
                           sample.fps)


def test_failed_encode_leaves_no_file_and_keeps_ffmpegs_words(tmp_path):
    for index in range(3):
        (tmp_path / f"bad_{index}.png").write_bytes(b"not a png")
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match=r"ffmpeg failed") as error:
        video.encode_video(str(tmp_path / "bad_%d.png"), 0, 3, output, Fraction(30))
    assert len(str(error.value).splitlines()) > 1  # ffmpeg's own stderr lines follow
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"bad_{i}.png" for i in range(3)]


def test_encode_replaces_an_existing_output(frames, sample, tmp_path):
    output = tmp_path / "out.mp4"
    output.write_bytes(b"old")
    video.encode_video(str(frames / "frame_%05d.png"), 0, 4, output, sample.fps)
    assert video.probe(output).frame_count == 4


def test_ffmpeg_writing_to_a_full_disk_raises_enospc(tmp_path):
    """/dev/full: a real write that fails with ENOSPC. The encoder turns ffmpeg's report of it into
    the same OSError a Python write gives, so one handler (workdir.disk_full_is_an_input_error)
    serves both; any other ffmpeg failure stays an EncodeFailed with ffmpeg's words."""
    import errno

    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=size=64x64:d=1",
               "-f", "rawvideo"]
    with pytest.raises(OSError) as full:
        video._run_ffmpeg([*command, "/dev/full"], Path("/dev/full"))
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(video.EncodeFailed, match="ffmpeg failed"):
        video._run_ffmpeg([*command, str(tmp_path / "missing" / "out.raw")], tmp_path / "out.raw")
