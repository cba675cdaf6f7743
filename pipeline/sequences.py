"""Numbered image sequences, the compositor's format: finding their frames, reading them as the
8-bit sRGB the optimizer works in, and writing EXR frames.

A sequence is named by a printf pattern (`shot.%04d.png`), a hash pattern (`shot.####.png`, one
`#` per digit of zero padding) or a folder of numbered frames of one extension. Its frames keep
their numbers: `first_number` is the number of its first frame (1001 for a shot that starts
there); the pipeline counts positions 0..N-1 inside it.

EXR goes through the ffmpeg bundled with imageio-ffmpeg, not OpenCV: the OpenCV wheel this
project uses is built without OpenEXR (`cv2.getBuildInformation()`: "OpenEXR: NO"), so no
OPENCV_IO_ENABLE_OPENEXR setting can enable it, before the import or after.
"""
from __future__ import annotations

import hashlib
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from . import images
from .errors import InputError
from .files import file_sha256, require_writable_dir, write_atomically
from .outputs import PRINTF_NUMBER, number_ranges

SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".ppm", ".exr")
HASH_RUN = re.compile(r"#+")
_NUMBERED_NAME = re.compile(r"^(?P<head>.*?)(?P<number>\d+)(?P<tail>\.[^.]+)$")
_EXR_MAGIC = b"\x76\x2f\x31\x01"
_EXR_PIXEL_TYPES = {0: "uint", 1: "half", 2: "float"}


@dataclass(frozen=True)
class Sequence:
    """The frames `pattern % n` for n in [first_number, first_number + count), none missing."""

    name: Path  # as the user wrote it, for messages
    pattern: str  # printf form
    first_number: int
    count: int

    def member(self, position: int) -> Path:
        return Path(self.pattern % (self.first_number + position))

    @property
    def members(self) -> list[Path]:
        return [self.member(position) for position in range(self.count)]


def is_sequence_input(path: Path) -> bool:
    """A folder, or a name with a printf or hash frame number that is not itself a file."""
    path = Path(path)
    if path.is_file():
        return False
    return path.is_dir() or bool(PRINTF_NUMBER.search(path.name) or HASH_RUN.search(path.name))


def find(path: Path) -> Sequence:
    """The sequence `path` names; InputError naming the numbers a gap leaves out."""
    path = Path(path)
    pattern = _folder_pattern(path) if path.is_dir() else _printf_pattern(path)
    numbers = _numbers_matching(path, pattern)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        noun = "frame" if len(missing) == 1 else "frames"
        verb = "is" if len(missing) == 1 else "are"
        raise InputError(f"{path}: {noun} {number_ranges(missing)} {verb} missing")
    return Sequence(path, pattern, numbers[0], len(numbers))


def _printf_pattern(path: Path) -> str:
    """shot.####.png -> shot.%04d.png; a printf pattern stays as it is."""
    name = path.name
    if not PRINTF_NUMBER.search(name):
        name = HASH_RUN.sub(lambda run: f"%0{len(run.group())}d", name, count=1)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: unsupported image sequence format {path.suffix or '(no extension)'}; "
                         f"use one of {', '.join(SUFFIXES)}")
    return str(path.with_name(name))


def _folder_pattern(folder: Path) -> str:
    """The one numbered naming of a folder's frames: frame_0001.png ... -> frame_%04d.png."""
    named = [m for p in folder.iterdir() if not p.name.startswith(".")
             and (m := _NUMBERED_NAME.match(p.name)) and m["tail"].lower() in SUFFIXES]
    kinds = sorted({(m["head"], m["tail"]) for m in named})
    if not kinds:
        raise InputError(f"{folder}: is a directory with no numbered image frames ({', '.join(SUFFIXES)}), not a video")
    if len(kinds) > 1:
        shown = ", ".join(f"{head}#{tail}" for head, tail in kinds[:4])
        raise InputError(f"{folder}: folder holds more than one numbered sequence ({shown}); name one with a pattern")
    head, tail = kinds[0]
    width = min(len(m["number"]) for m in named)
    number = f"%0{width}d" if width > 1 else "%d"
    return str(folder / (head.replace("%", "%%") + number + tail.replace("%", "%%")))


def _numbers_matching(path: Path, pattern: str) -> list[int]:
    """The sorted frame numbers whose file name is exactly `pattern % number`."""
    name = Path(pattern).name
    head, tail = PRINTF_NUMBER.split(name, maxsplit=1)[0::2]
    head, tail = head.replace("%%", "%"), tail.replace("%%", "%")
    number = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
    folder = Path(pattern).parent
    if not folder.is_dir():
        raise InputError(f"{path}: folder {folder} does not exist")
    # shot.%04d.png matches shot.0042.png but not shot.042.png: the name must be the pattern's own.
    numbers = sorted(int(m.group(1)) for p in folder.iterdir()
                     if (m := number.match(p.name)) and Path(pattern % int(m.group(1))) == p)
    if not numbers:
        raise InputError(f"{path}: no frames match the pattern")
    return numbers


def sequence_sha256(sequence: Sequence) -> str:
    """One checksum of the frames' names and contents, in order: a moved shot folder keeps it;
    a changed, renumbered or added frame changes it. Reads every frame, as a video's does."""
    digest = hashlib.sha256()
    for member in sequence.members:
        digest.update(f"{member.name}\0{file_sha256(member)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------- reading


def load_srgb8(path: Path) -> np.ndarray:
    """RGB uint8 sRGB: 16 bit scaled, float (EXR, float TIFF: linear light) through the sRGB curve."""
    rgb = read_exr(path) if path.suffix.lower() == ".exr" else images.load_rgb_native(path)
    if np.issubdtype(rgb.dtype, np.floating):
        return np.rint(linear_to_srgb(rgb) * 255.0).astype(np.uint8)
    return images.to_uint8(rgb, path)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) of linear light, clipped to 0..1."""
    linear = np.clip(np.nan_to_num(linear.astype(np.float64)), 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Its inverse, for sRGB values in 0..1."""
    srgb = srgb.astype(np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, np.power((srgb + 0.055) / 1.055, 2.4))


# ---------------------------------------------------------------- EXR through ffmpeg


def read_exr(path: Path) -> np.ndarray:
    """RGB float32 HxWx3 of an EXR frame, its linear values as stored (ffmpeg applies no curve)."""
    width, height = exr_size(path)
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-"],
        stdin=subprocess.DEVNULL, capture_output=True)
    planes = np.frombuffer(result.stdout, dtype="<f4")
    if result.returncode != 0 or planes.size != 3 * width * height:
        raise InputError(f"{path}: EXR frame cannot be decoded")
    green, blue, red = planes.reshape(3, height, width)
    return np.stack([red, green, blue], axis=2)


def write_exr(path: Path, rgb: np.ndarray) -> None:
    """An sRGB frame (uint8 or uint16) as a half-float EXR of linear light (ZIP compressed),
    written atomically."""
    require_writable_dir(path.parent)
    write_atomically(path, encode_exr(rgb))


def encode_exr(rgb: np.ndarray) -> bytes:
    height, width = rgb.shape[:2]
    linear = srgb_to_linear(images.to_unit(rgb)).astype("<f4")
    planes = np.stack([linear[:, :, 1], linear[:, :, 2], linear[:, :, 0]])  # gbrp order
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
         "-f", "rawvideo", "-pix_fmt", "gbrpf32le", "-s", f"{width}x{height}", "-i", "-",
         "-frames:v", "1", "-c:v", "exr", "-format", "half", "-compression", "zip16", "-f", "image2pipe", "-"],
        input=planes.tobytes(), capture_output=True)
    if result.returncode != 0 or not result.stdout.startswith(_EXR_MAGIC):
        raise RuntimeError(f"ffmpeg could not encode a {width}x{height} EXR frame: "
                           f"{result.stderr.decode(errors='replace').strip()[-500:]}")
    return result.stdout


def exr_header(path: Path) -> dict[str, bytes]:
    """The raw attributes of a single-part scanline EXR's header (name -> value bytes)."""
    data = Path(path).read_bytes()[:65536]
    if not data.startswith(_EXR_MAGIC):
        raise InputError(f"{path}: not an OpenEXR file")
    attributes, offset = {}, 8
    while offset < len(data) and data[offset] != 0:
        name_end = data.index(b"\0", offset)
        type_end = data.index(b"\0", name_end + 1)
        (size,) = struct.unpack_from("<i", data, type_end + 1)
        value_at = type_end + 5
        attributes[data[offset:name_end].decode()] = data[value_at:value_at + size]
        offset = value_at + size
    return attributes


def exr_size(path: Path) -> tuple[int, int]:
    """(width, height) of an EXR's data window."""
    xmin, ymin, xmax, ymax = struct.unpack("<4i", exr_header(path)["dataWindow"])
    return xmax - xmin + 1, ymax - ymin + 1


def exr_channel_types(path: Path) -> dict[str, str]:
    """Channel name -> 'half' / 'float' / 'uint'."""
    chlist, types, offset = exr_header(path)["channels"], {}, 0
    while chlist[offset] != 0:
        name_end = chlist.index(b"\0", offset)
        (pixel_type,) = struct.unpack_from("<i", chlist, name_end + 1)
        types[chlist[offset:name_end].decode()] = _EXR_PIXEL_TYPES.get(pixel_type, str(pixel_type))
        offset = name_end + 1 + 16  # pixel type, pLinear + 3 reserved bytes, xSampling, ySampling
    return types
