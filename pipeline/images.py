"""Still images: load anything OpenCV reads as RGB uint8; save PNG/TIFF/JPEG atomically; the one
rule between 8-bit levels, the optimizer's float levels and 16 bits."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.files import require_no_link_loop, require_writable_dir, write_atomically

# Levels are the 8-bit scale, 0-255, which the optimizer works in as floats. A 16-bit value is
# 257 times its level (65535 = 255 x 257): an 8-bit frame goes to 16 bits and back exactly, and
# a 16-bit frame read at 8 bits is its float levels rounded, as if they had been stored at 8 bits.
SIXTEEN_BIT_STEPS_PER_LEVEL = 257
_JPEG_MAGIC = b"\xff\xd8"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ORIENTED = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH  # applies EXIF orientation, keeps depth
_SAVE_DTYPES = {
    ".png": (np.uint8, np.uint16),
    ".tif": (np.uint8, np.uint16),
    ".tiff": (np.uint8, np.uint16),
    ".jpg": (np.uint8,),
    ".jpeg": (np.uint8,),
}
# Full-resolution chroma: 4:2:0 smears the coloured brush strokes that stylization produces.
_JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY, 95,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]
_SAVE_PARAMS = {".jpg": _JPEG_PARAMS, ".jpeg": _JPEG_PARAMS}


# ---------------------------------------------------------------- loading


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 HxWx3: gray is repeated, alpha composited over white, 16 bit scaled to 8."""
    path = Path(path)
    return to_uint8(load_rgb_native(path), path)


def load_rgb16(path: str | os.PathLike) -> np.ndarray:
    """RGB uint16 HxWx3 of an 8- or 16-bit image (8 bit scaled by to_uint16's rule)."""
    path = Path(path)
    rgb = load_rgb_native(path)
    if rgb.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: unsupported pixel type {rgb.dtype} for a 16-bit read")
    return to_uint16(rgb)


def load_rgb_native(path: str | os.PathLike) -> np.ndarray:
    """RGB HxWx3 at the file's own depth (uint8, uint16 or float), alpha composited over white."""
    path = Path(path)
    return _to_rgb(_decode(_read_bytes(path), path), path)


def _read_bytes(path: Path) -> np.ndarray:
    # np.fromfile + imdecode because cv2.imread cannot open non-ASCII paths on every platform.
    require_no_link_loop(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    if data.size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    return data


def _decode(data: np.ndarray, path: Path) -> np.ndarray:
    """Decode keeping alpha and 16 bit; honour EXIF orientation where there is no alpha.

    IMREAD_UNCHANGED keeps alpha but ignores EXIF orientation (phone photos come out sideways);
    ANYCOLOR|ANYDEPTH turns them upright but drops alpha. JPEGs never carry alpha and PNGs
    (our own frames, read back on every resume) practically never carry orientation, so only
    other formats (TIFF, WebP, ...) without alpha are decoded a second time.
    """
    magic = data[:8].tobytes()
    flags = _ORIENTED if magic.startswith(_JPEG_MAGIC) else cv2.IMREAD_UNCHANGED
    image = _imdecode(data, flags)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read")
    if flags != _ORIENTED and not magic.startswith(_PNG_MAGIC) and not _has_alpha(image):
        image = _imdecode(data, _ORIENTED)
    return image


def _imdecode(data: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:  # some decoders raise instead of returning None on garbage
        return None


def _has_alpha(image: np.ndarray) -> bool:
    return image.ndim == 3 and image.shape[2] == 4


def _to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 3:
        return image[:, :, ::-1]
    if image.shape[2] == 4:
        return _over_white(image[:, :, 2::-1], image[:, :, 3])
    raise InputError(f"{path}: unsupported image with {image.shape[2]} channels")


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over white: transparent areas of a style image should not read as black."""
    full = _full_scale(rgb.dtype)
    weight = alpha.astype(np.float64)[:, :, None] / full
    composite = rgb * weight + full * (1.0 - weight)
    if np.issubdtype(rgb.dtype, np.integer):
        composite = np.rint(composite)
    return composite.astype(rgb.dtype)


def to_uint8(rgb: np.ndarray, path: Path) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    if rgb.dtype == np.uint16:
        return np.rint(rgb / SIXTEEN_BIT_STEPS_PER_LEVEL).astype(np.uint8)
    if rgb.dtype in (np.float32, np.float64):  # EXR / float TIFF: 0..1 nominal range
        return np.rint(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise InputError(f"{path}: unsupported pixel type {rgb.dtype}")


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def to_unit(rgb: np.ndarray) -> np.ndarray:
    """Float64 0..1 of integer RGB at its own depth (uint8 / 255, uint16 / 65535)."""
    return rgb / _full_scale(rgb.dtype)


# ---------------------------------------------------------------- levels: 8 and 16 bits


def levels_to_uint8(levels: np.ndarray) -> np.ndarray:
    """RGB uint8 of float levels: rounded to the nearest level, clipped to 0-255."""
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """RGB uint16 of levels: uint8, or float 0-255 (the optimizer's result, kept to 1/257 of a
    level); uint16 is returned as it is."""
    if rgb.dtype == np.uint16:
        return rgb
    levels = np.clip(rgb.astype(np.float64), 0, 255)  # float64: float32 levels x 257 are exact
    return np.rint(levels * SIXTEEN_BIT_STEPS_PER_LEVEL).astype(np.uint16)


# ---------------------------------------------------------------- saving


def save_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write RGB HxWx3 (uint8, or uint16 for PNG/TIFF) so that `path` is never half written."""
    path = Path(path)
    extension = path.suffix.lower()
    _check_saveable(path, extension, rgb)
    require_writable_dir(path.parent)
    write_atomically(path, encode_image(extension, rgb))


def encode_image(extension: str, rgb: np.ndarray) -> bytes:
    """The file contents `save_rgb` writes for an RGB frame (so a checksum can be taken first)."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    ok, encoded = cv2.imencode(extension, bgr, _SAVE_PARAMS.get(extension, []))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} {extension} image")
    return encoded.tobytes()


def _check_saveable(path: Path, extension: str, rgb: np.ndarray) -> None:
    if extension not in _SAVE_DTYPES:
        raise InputError(f"{path}: unsupported image format, use one of {sorted(_SAVE_DTYPES)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{path}: expected an HxWx3 RGB array, got shape {rgb.shape}")
    if rgb.dtype not in _SAVE_DTYPES[extension]:
        raise ValueError(f"{path}: {extension} cannot hold {rgb.dtype} pixels")


def check_output_image(path: str | os.PathLike) -> None:
    """InputError now, before anything is rendered, if save_rgb(path, frame) would refuse."""
    path = Path(path)
    require_no_link_loop(path)
    extension = path.suffix.lower()
    if extension not in _SAVE_DTYPES:
        raise InputError(f"{path}: unsupported image format, use one of {sorted(_SAVE_DTYPES)}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file name")
    require_writable_dir(path.parent)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at size=(width, height), unchanged when it is that size already: area averaging
    when shrinking (no aliasing, which optical flow and Gram matrices would both pick up),
    bicubic when enlarging. Bicubic overshoots at edges, so a float image is clipped to 0-255."""
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    shrinking = size[0] * size[1] < width * height
    result = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return result if result.dtype == np.uint8 else np.clip(result, 0, 255)

