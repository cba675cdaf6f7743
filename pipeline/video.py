"""Reading video frames and metadata; writing the final video with the source's sound.

Decoding goes through OpenCV's FFmpeg backend; encoding and audio go through the ffmpeg binary
bundled with imageio-ffmpeg, so that frame rate, trimming and optional audio stay exact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import imageio_ffmpeg
import numpy as np

from pipeline import images
from pipeline.config import VGG_MIN_SIDE
from pipeline import sequences
from pipeline.errors import InputError
from pipeline.files import require_no_link_loop, require_writable_dir

# libav's own complaints ("moov atom not found", "error while decoding MB ...") would bury the one
# InputError line that says what is wrong; OpenCV reads this when its FFmpeg backend starts.
# Set OPENCV_FFMPEG_LOGLEVEL yourself (e.g. 24 = warnings) to see them when debugging.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

_STDERR_TAIL_LINES = 15
_FFMPEG_PROBE_TIMEOUT_S = 60
# ffmpeg prints the container duration to 1/100 s.
_DURATION_RESOLUTION_S = Fraction(1, 100)
# A claimed frame count this much above what decodes means a truncated or damaged file, not an
# estimate that is off by a frame or two (containers without an index).
_MIN_DECODABLE_SHARE = 0.9
# Containers that hold what encode_video writes (H.264 + AAC), measured with the bundled ffmpeg;
# .webm, .gif or an image extension fail only when encoding, i.e. after the whole render.
# H.264 quality and chroma per `video_chroma` setting: 4:2:0 plays everywhere; 4:4:4 keeps the
# strokes' colour steady (crf 14: 1.09x the frames' E_warp, 2.4 Mbit/s at 320x240; see
# _encode_command's comment) where Apple's players and hardware decoders refuse it.
CHROMA = {
    "4:2:0": ["-crf", "18", "-pix_fmt", "yuv420p"],
    "4:4:4": ["-crf", "14", "-pix_fmt", "yuv444p"],
}
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".ts")
# .mov is the mezzanine: ProRes 422 HQ, 10-bit 4:2:2, with uncompressed sound, for editors and
# compositing; the other containers get H.264 + AAC.
PRORES = ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le", "-vendor", "apl0"]
PRORES_EXTENSIONS = (".mov",)
SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")
SEQUENCE_FPS = Fraction(24)  # an image sequence has no rate of its own; --fps sets it

# CAP_PROP_ORIENTATION_META is the clockwise rotation that makes the frame upright
# (measured: ffmpeg's "-display_rotation 90" reads back as 270, and its autorotated frame
# equals a 90° counter-clockwise turn, i.e. 270° clockwise).
_ROTATE_CLOCKWISE = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # display size, i.e. after applying rotation
    height: int
    fps: Fraction  # OpenCV's, limit_denominator(1_000_000) (30.02 stays 30.02); see _average_fps
    frame_count: int
    rotation: int  # 0/90/180/270: clockwise turn that makes a frame upright
    has_audio: bool
    first_number: int = 0  # the number of frame 0: a video's frames count from 0, a shot's from e.g. 1001
    sequence: sequences.Sequence | None = None  # an image-sequence input (no audio, fps given)
    timecode: str | None = None  # SMPTE timecode of frame 0 ("01:00:00:00"; ';' drop-frame), if the file has one


def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg (never a system one of unknown version)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


# ---------------------------------------------------------------- probing


def probe(path: str | os.PathLike, sequence_fps: Fraction | None = None) -> VideoInfo:
    """Size, rate, length, rotation and audio of a video or an image sequence (at
    `sequence_fps`, default SEQUENCE_FPS); InputError if it cannot be used."""
    path = Path(path)
    if sequences.is_sequence_input(path):
        return _probe_sequence(path, Fraction(sequence_fps or SEQUENCE_FPS))
    _require_nonempty_file(path)
    cap = _open_capture(path)
    try:
        rotation = _rotation_of(cap)
        first = _first_frame(cap, path)
        fps = _fps_of(cap, path)
        frame_count = _frame_count_of(cap, path)
    finally:
        cap.release()
    height, width = _upright(first, rotation).shape[:2]
    listing = _ffmpeg_listing(path)
    has_audio = _has_audio(listing)
    if not has_audio:  # with sound, the container's duration may be the sound's, not the video's
        fps = _average_fps(fps, frame_count, _container_duration_s(listing))
    return VideoInfo(path, width, height, fps, frame_count, rotation, has_audio, timecode=_timecode(listing))


def _probe_sequence(path: Path, fps: Fraction) -> VideoInfo:
    if fps <= 0:
        raise InputError(f"{path}: frame rate {fps} must be above 0")
    sequence = sequences.find(path)
    height, width = sequences.load_srgb8(sequence.member(0)).shape[:2]
    return VideoInfo(path, width, height, fps, sequence.count, 0, False, sequence.first_number, sequence)


def _require_nonempty_file(path: Path) -> None:
    require_no_link_loop(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: file is not readable (permission denied)")


def _open_capture(path: Path) -> cv2.VideoCapture:
    """Open with the FFmpeg backend only, rotation handled by us (see _upright)."""
    # Forcing CAP_FFMPEG keeps OpenCV from reading a name with '%' as an image sequence.
    with _opencv_quiet():  # "backend is generally available but can't be used to capture by name"
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise InputError(f"{path}: {_why_unopenable(path)}")
    # OpenCV 5 turns auto-rotation on by default and then swaps the reported width/height;
    # turning it off gives raw frames and one explicit rotation path for every OpenCV version.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return cap


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log at errors only, for one call; an OPENCV_LOG_LEVEL the user set wins."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        yield
        return
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _why_unopenable(path: Path) -> str:
    streams = _stream_lines(_ffmpeg_listing(path))
    if streams and not any(": Video:" in line for line in streams):
        return "has no video stream"
    return "not a video or cannot be decoded (damaged or truncated?)"


def _rotation_of(cap: cv2.VideoCapture) -> int:
    meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    quarter_turns = int(round(meta / 90.0)) % 4 if np.isfinite(meta) else 0
    return quarter_turns * 90


def _first_frame(cap: cv2.VideoCapture, path: Path) -> np.ndarray:
    ok, frame = cap.read()
    if not ok or frame is None:
        raise InputError(f"{path}: video has no decodable frames")
    return frame


def _fps_of(cap: cv2.VideoCapture, path: Path) -> Fraction:
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"{path}: frame rate is missing or invalid ({fps})")
    return Fraction(fps).limit_denominator(1_000_000)


def _frame_count_of(cap: cv2.VideoCapture, path: Path) -> int:
    """The container's frame count if the file really ends there, else the decodable count."""
    claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if claimed > 0 and _ends_exactly_at(cap, claimed):
        return claimed
    decodable = _count_by_decoding(path)
    if decodable == 0:
        raise InputError(f"{path}: video has no decodable frames")
    if claimed > 0 and decodable < _MIN_DECODABLE_SHARE * claimed:
        raise InputError(
            f"{path}: only {decodable} of {claimed} frames decode (truncated or damaged file?)"
        )
    return decodable


def _ends_exactly_at(cap: cv2.VideoCapture, count: int) -> bool:
    """One seek instead of decoding the whole clip: frame count-1 exists and nothing after it."""
    cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
    return bool(cap.grab()) and not cap.grab()


def _count_by_decoding(path: Path) -> int:
    # A fresh capture, not a seek to 0: seeking back fails on raw streams (measured on .h264).
    cap = _open_capture(path)
    try:
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def _average_fps(fps: Fraction, frame_count: int, duration_s: Fraction | None) -> Fraction:
    """frames / duration where OpenCV's rate misses the clip's length by more than a frame.

    A variable-rate GIF has no rate of its own; ffmpeg estimates one from its shortest frame
    delays (newtonscradle.gif: 50 fps, 36 frames in 0.72 s for a 0.82 s animation), and encoding
    at that rate would shorten it. The average rate keeps its duration; the timing inside is
    evened out, as for any variable-rate clip. Containers that store a true average (MP4) agree
    with their duration and keep OpenCV's exact rate.
    """
    if not duration_s:
        return fps
    mismatch_s = abs(frame_count / fps - duration_s)
    if mismatch_s <= 1 / fps + _DURATION_RESOLUTION_S:
        return fps
    return (frame_count / duration_s).limit_denominator(1_000_000)


def _timecode(listing: str) -> str | None:
    """The first "timecode : 01:00:00:00" of `ffmpeg -i` (a tmcd track or the container's tag)."""
    match = re.search(r"^\s*timecode\s*:\s*(\d\d:\d\d:\d\d[:;.,]\d\d)\s*$", listing, re.M)
    return match.group(1) if match else None


def _has_audio(listing: str) -> bool:
    return any(": Audio:" in line for line in _stream_lines(listing))


def _container_duration_s(listing: str) -> Fraction | None:
    """The "Duration: 00:00:00.82" of `ffmpeg -i`; None where it says N/A."""
    match = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", listing)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + Fraction(seconds)


def _stream_lines(listing: str) -> list[str]:
    """The "Stream #0:1: Audio: ..." lines of an `ffmpeg -i` listing."""
    return [line for line in listing.splitlines() if re.match(r"\s*Stream #", line)]


def _ffmpeg_listing(path: Path) -> str:
    """What `ffmpeg -i` says about the file: duration and streams (it exits non-zero by design)."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=_FFMPEG_PROBE_TIMEOUT_S,
    )
    return result.stderr


def _upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    return cv2.rotate(frame, _ROTATE_CLOCKWISE[rotation]) if rotation else frame


# ---------------------------------------------------------------- sizes


def output_size(info: VideoInfo, long_side: int | None) -> tuple[int, int]:
    """(width, height) with the long side at most `long_side` (None/0: source), even, >= 32 px."""
    source_long = max(info.width, info.height)
    target_long = min(long_side, source_long) if long_side else source_long
    scale = target_long / source_long
    width = _even_at_most(info.width * scale, min(info.width, target_long))
    height = _even_at_most(info.height * scale, min(info.height, target_long))
    if min(width, height) < VGG_MIN_SIDE:
        raise InputError(
            f"{info.path}: output size {width}x{height} is below {VGG_MIN_SIDE} px per side "
            f"(VGG16 minimum); use a larger size or a larger video"
        )
    return width, height


def _even_at_most(length: float, limit: int) -> int:
    """Nearest even number (H.264 needs even sides), never above the limit (no upscaling)."""
    return min(2 * int(length / 2 + 0.5), limit - limit % 2)


# ---------------------------------------------------------------- reading


def read_frames(
    info: VideoInfo, start: int, end: int, size: tuple[int, int]
) -> Iterator[np.ndarray]:
    """RGB uint8 HxWx3 frames [start, end), upright and resized to size=(width, height).

    The range is checked now, not at the first next(), so a bad range fails where it is asked.
    """
    if not 0 <= start < end:
        raise InputError(f"{info.path}: frame range [{start}, {end}) is empty or negative")
    if end > info.frame_count:
        raise InputError(
            f"{info.path}: frame range [{start}, {end}) is past the end "
            f"({info.frame_count} frames)"
        )
    if info.sequence is not None:
        return _load_range(info, start, end, size)
    return _decode_range(info, start, end, size)


def _load_range(info: VideoInfo, start: int, end: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    for position in range(start, end):
        frame = sequences.load_srgb8(info.sequence.member(position))
        if frame.shape[:2] != (info.height, info.width):
            raise InputError(f"{info.sequence.member(position)}: frame is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the sequence's first is {info.width}x{info.height}")
        yield images.resized(frame, size)


def _decode_range(
    info: VideoInfo, start: int, end: int, size: tuple[int, int]
) -> Iterator[np.ndarray]:
    cap = _open_capture(info.path)
    try:
        _skip_to(cap, start, info.path)
        for index in range(start, end):
            ok, frame = cap.read()
            if not ok:
                raise InputError(f"{info.path}: frame {index} cannot be decoded")
            yield _to_rgb(images.resized(_upright(frame, info.rotation), size))
    finally:
        cap.release()


def _skip_to(cap: cv2.VideoCapture, start: int, path: Path) -> None:
    """Decode and drop frames before `start`.

    Decode order is the frame numbering probe() counts by; a pts-based seek can disagree with it
    on variable-frame-rate clips, and two farm chunks would then share or miss a frame. Skipping
    costs ~1.6 ms per 1080p frame, nothing next to stylizing a chunk.
    """
    for index in range(start):
        if not cap.grab():
            raise InputError(f"{path}: frame {index} cannot be decoded")


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


# ---------------------------------------------------------------- writing


def encode_video(
    frames_pattern: str,
    first_number: int,
    count: int,
    output: Path,
    fps: Fraction,
    audio_from: Path | None = None,
    audio_start_frame: int = 0,
    chroma: str = "4:2:0",
    timecode: str | None = None,
) -> None:
    """Encode PNGs `frames_pattern % n`, n in [first_number, first_number+count), to H.264
    (ProRes 422 HQ for .mov).

    With `audio_from`, its sound from frame `audio_start_frame` on, for the same duration, is
    muxed in as AAC (if it has any). `chroma` is one of CHROMA. `timecode`, that of the first
    frame, goes into a tmcd track (MP4, MOV). The file appears under `output` only once it is
    complete.
    """
    output = Path(output)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    require_writable_dir(output.parent)
    _require_frames_exist(frames_pattern, first_number, count)
    partial = output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")
    command = _encode_command(
        frames_pattern, first_number, count, partial, Fraction(fps), audio_from, audio_start_frame, chroma, timecode
    )
    try:
        _run_ffmpeg(command, output)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


def check_output(output: str | os.PathLike, sequence: bool = False, bit_depth: int = 8) -> None:
    """InputError now, not after hours of rendering, if `output` cannot be written.

    `output` is a video file (by extension, see VIDEO_EXTENSIONS) or, with `sequence`, an image
    sequence pattern (out.%04d.png, .exr for half-float EXR); its directory must already exist
    and be writable. `bit_depth` 16 is for PNG and TIFF sequences.
    """
    output = Path(output)
    require_no_link_loop(output)
    if bit_depth not in (8, 16):
        raise InputError(f"{output}: bit depth {bit_depth} is not 8 or 16")
    if bit_depth == 16 and not (sequence and output.suffix.lower() in SIXTEEN_BIT_EXTENSIONS):
        raise InputError(f"{output}: --bit-depth 16 writes PNG or TIFF sequences (like out.%04d.png); "
                         "EXR is always half float, videos are 8 bit (ProRes .mov: 10 bit)")
    if sequence:
        try:
            first = Path(str(output) % 0)
        except (TypeError, ValueError):
            raise InputError(
                f"{output}: not a valid image sequence pattern (use one number, like out.%04d.png)"
            ) from None
        if first.suffix.lower() == ".exr":  # written by sequences.write_exr, not OpenCV
            require_writable_dir(first.parent)
        else:
            images.check_output_image(first)
        return
    if output.is_dir():
        raise InputError(f"{output}: is a directory; name the output video file, like {output / 'out.mp4'}")
    if output.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(
            f"{output}: unsupported output format {output.suffix or '(no extension)'!s}; "
            f"use a video ({', '.join(VIDEO_EXTENSIONS)}) or an image sequence like out.%04d.png"
        )
    require_writable_dir(output.parent)


def _require_frames_exist(frames_pattern: str, first_number: int, count: int) -> None:
    # Checking both ends catches a wrong pattern or an unfinished render before ffmpeg runs.
    for number in (first_number, first_number + count - 1):
        frame = Path(frames_pattern % number)
        if not frame.is_file():
            raise InputError(f"{frame}: frame to encode is missing")


def _encode_command(
    frames_pattern: str,
    first_number: int,
    count: int,
    output: Path,
    fps: Fraction,
    audio_from: Path | None,
    audio_start_frame: int,
    chroma: str = "4:2:0",
    timecode: str | None = None,
) -> list[str]:
    rate = f"{fps.numerator}/{fps.denominator}"  # exact; a float rate drifts against the sound
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    command += ["-f", "image2", "-framerate", rate, "-start_number", str(first_number)]
    command += ["-i", frames_pattern]
    if audio_from is not None:
        start_s = Fraction(audio_start_frame) / fps
        duration_s = Fraction(count) / fps
        command += ["-ss", _seconds(start_s), "-t", _seconds(duration_s), "-i", str(audio_from)]
        command += ["-map", "0:v:0", "-map", "1:a?", *_audio_codec(output)]
    command += ["-frames:v", str(count), "-r", rate]
    # Frames should already be even-sized (output_size); cropping one pixel beats a failed encode.
    command += ["-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2"]
    # 4:2:0 by default because most players (Apple's, hardware decoders) refuse 4:4:4. On stylized
    # frames its half-resolution chroma, not the crf, is what adds flicker: ~1.8x the PNG frames'
    # E_warp at crf 12-18, with or without -tune grain or B-frames; yuv444p stays within 1.1x
    # (benchmarks/encoding.py, table in benchmarks/RESULTS.md).
    if _is_prores(output):
        command += PRORES
    else:
        command += ["-c:v", "libx264", "-preset", "medium", *CHROMA[chroma]]
    if output.suffix.lower() in (".mp4", ".m4v", ".mov"):
        command += ["-movflags", "+faststart"]  # playable while still downloading
        command += ["-timecode", timecode] if timecode else []  # a tmcd track, as the source had
    command.append(str(output))
    return command


def _is_prores(output: Path) -> bool:
    return output.suffix.lower() in PRORES_EXTENSIONS


def _audio_codec(output: Path) -> list[str]:
    """Uncompressed sound beside ProRes (what editors expect of a mezzanine), AAC beside H.264."""
    return ["-c:a", "pcm_s16le"] if _is_prores(output) else ["-c:a", "aac", "-b:a", "192k"]


def _seconds(value: Fraction) -> str:
    return f"{float(value):.6f}"


class EncodeFailed(RuntimeError):
    """ffmpeg refused to encode, for a reason other than a full disk; the message ends with its report."""


def _run_ffmpeg(command: list[str], output: Path) -> None:
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace"
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        for code in (errno.ENOSPC, errno.EDQUOT):  # ffmpeg reports a failed write by its strerror text
            if os.strerror(code) in result.stderr:
                raise OSError(code, os.strerror(code), str(output))
        raise EncodeFailed(f"{output}: ffmpeg failed with exit code {result.returncode}:\n{tail}")
