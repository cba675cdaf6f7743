"""pipeline.images on files written by OpenCV and by Pillow (CMYK, palette, EXIF, LA)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline import images
from pipeline.errors import InputError
from pipeline.images import load_rgb, save_rgb

RED, BLUE = (255, 0, 0), (0, 0, 255)


def two_colour_rgb(height: int = 20, width: int = 30) -> np.ndarray:
    """Red top-left quarter, blue bottom-right quarter, grey elsewhere."""
    rgb = np.full((height, width, 3), 128, np.uint8)
    rgb[: height // 2, : width // 2] = RED
    rgb[height // 2 :, width // 2 :] = BLUE
    return rgb


def assert_rgb8(image: np.ndarray, height: int, width: int) -> None:
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert image.flags.c_contiguous


# ---------------------------------------------------------------- loading


def test_colour_png_is_rgb_not_bgr(tmp_path):
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), two_colour_rgb()[:, :, ::-1])
    image = load_rgb(path)
    assert_rgb8(image, 20, 30)
    assert np.array_equal(image, two_colour_rgb())


def test_grayscale_is_repeated_into_three_channels(tmp_path):
    gray = np.arange(8 * 8, dtype=np.uint8).reshape(8, 8) * 3
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    image = load_rgb(tmp_path / "gray.png")
    assert_rgb8(image, 8, 8)  # tiny 8x8 loads too
    assert all(np.array_equal(image[:, :, c], gray) for c in range(3))


def test_alpha_is_composited_over_white(tmp_path):
    bgra = np.zeros((4, 3, 4), np.uint8)
    bgra[..., 2] = 255  # red
    bgra[:, 0, 3], bgra[:, 1, 3], bgra[:, 2, 3] = 0, 255, 128
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    image = load_rgb(tmp_path / "rgba.png")
    assert_rgb8(image, 4, 3)
    assert tuple(image[0, 0]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(image[0, 1]) == (255, 0, 0)
    assert tuple(image[0, 2]) == (255, 127, 127)


def test_gray_with_alpha(tmp_path):
    Image.fromarray(two_colour_rgb()).convert("LA").save(tmp_path / "la.png")
    expected = np.asarray(Image.open(tmp_path / "la.png").convert("L"))
    image = load_rgb(tmp_path / "la.png")
    assert_rgb8(image, 20, 30)
    assert np.array_equal(image[:, :, 1], expected)


def test_8_bits_of_16_bit_levels_are_the_float_levels_rounded():
    """Why 8-bit readers of the 16-bit work directory get exactly what 8-bit frames gave."""
    ties = np.arange(-1, 256) + 0.5
    levels = np.concatenate([np.random.default_rng(0).uniform(-2, 257, 200_000), ties]).astype(np.float32)
    sixteen = images.to_uint16(levels)
    assert np.array_equal(images.to_uint8(sixteen, Path("x.png")), images.levels_to_uint8(levels))
    assert len(np.unique(sixteen)) > 256 * 200  # the fraction of a level survives
    eight = np.arange(256, dtype=np.uint8)
    assert np.array_equal(images.to_uint16(eight), eight.astype(np.uint16) * 257)


def test_an_8_bit_image_reads_at_16_bits_scaled(tmp_path):
    save_rgb(tmp_path / "old.png", two_colour_rgb())
    deep = images.load_rgb16(tmp_path / "old.png")
    assert deep.dtype == np.uint16 and np.array_equal(deep, two_colour_rgb().astype(np.uint16) * 257)


@pytest.mark.parametrize("name", ["gray16.png", "rgb16.png", "rgb16.tif"])
def test_16_bit_is_scaled_to_8_bit(tmp_path, name):
    levels = np.array([0, 257, 257 * 128, 65535], np.uint16)  # 8-bit 0, 1, 128, 255
    plane = np.tile(levels, (5, 1))
    array = plane if name.startswith("gray") else np.dstack([plane] * 3)
    cv2.imwrite(str(tmp_path / name), array)
    image = load_rgb(tmp_path / name)
    assert_rgb8(image, 5, 4)
    assert list(image[0, :, 0]) == [0, 1, 128, 255]


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    Image.fromarray(two_colour_rgb()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    image = load_rgb(tmp_path / "cmyk.jpg")
    assert_rgb8(image, 20, 30)
    assert np.abs(image[3, 3].astype(int) - RED).max() < 10
    assert np.abs(image[-3, -3].astype(int) - BLUE).max() < 10


def test_palette_png(tmp_path):
    Image.fromarray(two_colour_rgb()).convert("P").save(tmp_path / "palette.png")
    image = load_rgb(tmp_path / "palette.png")
    assert_rgb8(image, 20, 30)
    assert np.array_equal(image, np.asarray(Image.open(tmp_path / "palette.png").convert("RGB")))


def test_exif_orientation_is_applied(tmp_path):
    photo = Image.fromarray(two_colour_rgb())
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones write
    photo.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "phone.jpg")))
    image = load_rgb(tmp_path / "phone.jpg")
    assert_rgb8(image, 30, 20)
    assert np.abs(image.astype(int) - expected).mean() < 3


def test_non_ascii_path(tmp_path):
    path = tmp_path / "stíl – 星夜.png"
    cv2.imencode(".png", two_colour_rgb()[:, :, ::-1])[1].tofile(path)
    assert np.array_equal(load_rgb(path), two_colour_rgb())


@pytest.mark.parametrize("name, problem", [
    ("missing.png", "not found"),
    ("folder.png", "directory"),
    ("empty.png", "empty"),
    ("text.png", "not an image"),
    ("truncated.jpg", "not an image"),
    ("loop.png", "symbolic link loop"),
])
def test_bad_image_is_refused_naming_the_file(tmp_path, name, problem):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "loop.png").symlink_to("loop.png")  # ln -s loop.png loop.png
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello\n")
    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[:20])
    path = tmp_path / name
    with pytest.raises(InputError) as error:
        load_rgb(path)
    message = str(error.value)
    assert message.startswith(f"{path}:") and problem in message and "\n" not in message


# ---------------------------------------------------------------- saving


@pytest.mark.parametrize("name, dtype", [
    ("a.png", np.uint8), ("a.png", np.uint16), ("a.tif", np.uint8), ("a.tiff", np.uint16),
])
def test_save_is_lossless_for_png_and_tiff(tmp_path, name, dtype):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, np.iinfo(dtype).max, (9, 7, 3), endpoint=True).astype(dtype)
    save_rgb(tmp_path / name, rgb)
    written = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert written.dtype == dtype and np.array_equal(written, rgb)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_save_jpeg_and_load_back(tmp_path):
    save_rgb(tmp_path / "a.jpg", two_colour_rgb())
    assert np.abs(load_rgb(tmp_path / "a.jpg").astype(int) - two_colour_rgb()).mean() < 3


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "frame.png"
    save_rgb(path, np.zeros((4, 4, 3), np.uint8))
    save_rgb(path, np.full((4, 4, 3), 9, np.uint8))
    assert load_rgb(path).max() == 9


def test_interrupted_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "frame.png"
    save_rgb(path, np.zeros((4, 4, 3), np.uint8))

    def crash(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(images.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_rgb(path, np.full((4, 4, 3), 9, np.uint8))
    assert load_rgb(path).max() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]


def test_temporary_name_is_not_a_finished_frame(tmp_path, monkeypatch):
    # A resume scan globbing "*.png" must never count a half-written frame.
    seen: list[str] = []
    real_replace = os.replace

    def spy(source, destination):
        seen.append(Path(source).name)
        real_replace(source, destination)

    monkeypatch.setattr(images.os, "replace", spy)
    save_rgb(tmp_path / "frame_00001.png", np.zeros((4, 4, 3), np.uint8))
    assert seen and not seen[0].endswith(".png")


def test_save_refuses_missing_directory(tmp_path):
    target = tmp_path / "nowhere" / "a.png"
    with pytest.raises(InputError, match=r"output directory does not exist") as error:
        save_rgb(target, np.zeros((4, 4, 3), np.uint8))
    assert str(error.value).startswith(f"{target.parent}:")


def test_save_refuses_unwritable_directory(tmp_path, monkeypatch):
    # Root ignores permission bits, so the check itself is driven through os.access here.
    monkeypatch.setattr(images.os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match="not writable"):
        save_rgb(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_save_refuses_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(InputError, match="not writable"):
        save_rgb(locked / "a.png", np.zeros((4, 4, 3), np.uint8))


def test_save_refuses_unsupported_format_and_types(tmp_path):
    with pytest.raises(InputError, match=r"a\.gif: unsupported image format"):
        save_rgb(tmp_path / "a.gif", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="uint16"):
        save_rgb(tmp_path / "a.jpg", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError, match="HxWx3"):
        save_rgb(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
