"""Preview aids for artists: source | stylized pairs as one contact sheet, or as a video.

Both read what a work directory holds (workdir.WorkDir), so they work on a partial render and
never need TensorFlow.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline import images, video
from pipeline.errors import InputError
from pipeline.outputs import is_sequence_pattern, output_stem
from pipeline.workdir import FinalFrames, WorkDir

FramePair = tuple[int, np.ndarray, np.ndarray]  # (source frame index, source RGB, stylized RGB)

SHEET_GAP = 6  # pixels between cells and around the sheet
SHEET_BACKGROUND = (32, 32, 36)
_LABEL_BOX = (0, 0, 0)
_LABEL_TEXT = (255, 255, 255)


def pick_every(indices: Sequence[int], every: int) -> list[int]:
    """Every `every`-th index, always with the first and the last (the in and out points)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    picked = list(indices[::every])
    if indices and picked[-1] != indices[-1]:
        picked.append(indices[-1])
    return picked


def read_pairs(workdir: Path, info: video.VideoInfo, size: tuple[int, int], indices: Sequence[int]) -> Iterable[FramePair]:
    """(index, source, stylized) for sorted `indices`, decoding the source once front to back."""
    if not indices:
        return
    wanted, final = set(indices), FinalFrames(WorkDir(workdir))  # stitched frames where a border has them
    sources = video.read_frames(info, indices[0], indices[-1] + 1, size)
    for index, source in zip(range(indices[0], indices[-1] + 1), sources):
        if index in wanted:
            yield index, source, final.load(index)


def preview_path(output: Path, suffix: str, sequence: bool | None = None) -> Path:
    """Beside the output, named like it: clip.mp4 -> clip<suffix>, shot.%04d.png -> shot<suffix>.
    `sequence` None: a printf pattern in the name makes it a sequence."""
    output = Path(output)
    sequence = is_sequence_pattern(output) if sequence is None else sequence
    return output.with_name(f"{output_stem(output, sequence)}{suffix}")


# ---------------------------------------------------------------- composing


def side_by_side(source: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """source | stylized, the source resized to the stylized frame so the halves line up."""
    height, width = stylized.shape[:2]
    if source.shape[:2] != (height, width):
        source = cv2.resize(source, (width, height), interpolation=cv2.INTER_AREA)
    return np.concatenate([source, stylized], axis=1)


def contact_sheet(
    pairs: Iterable[FramePair], columns: int = 4, thumbnail: int = 0,
    background: tuple[int, int, int] = SHEET_BACKGROUND,
) -> np.ndarray:
    """One RGB image: a grid of (source | stylized) cells, each labelled with its frame number.

    `thumbnail` > 0 shrinks each half to that long side first, so a sheet of 1080p frames stays
    a glanceable size. Cells fill rows left to right; the last row may be short. The sheet is
    rows * h + (rows + 1) * SHEET_GAP high and columns * 2w + (columns + 1) * SHEET_GAP wide.
    """
    cells = [_labelled(side_by_side(*_shrunk(source, stylized, thumbnail)), index) for index, source, stylized in pairs]
    if not cells:
        raise ValueError("a contact sheet needs at least one frame pair")
    columns = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / columns)
    cell_height, cell_width = cells[0].shape[:2]
    sheet = np.empty((rows * cell_height + (rows + 1) * SHEET_GAP, columns * cell_width + (columns + 1) * SHEET_GAP, 3), np.uint8)
    sheet[:] = background
    for number, cell in enumerate(cells):
        top = SHEET_GAP + (number // columns) * (cell_height + SHEET_GAP)
        left = SHEET_GAP + (number % columns) * (cell_width + SHEET_GAP)
        sheet[top:top + cell_height, left:left + cell_width] = cell
    return sheet


def _shrunk(source: np.ndarray, stylized: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    height, width = stylized.shape[:2]
    if long_side <= 0 or max(width, height) <= long_side:
        return source, stylized  # never upscale: a preview must not invent detail
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (cv2.resize(source, size, interpolation=cv2.INTER_AREA),
            cv2.resize(stylized, size, interpolation=cv2.INTER_AREA))


def _labelled(cell: np.ndarray, index: int) -> np.ndarray:
    """The frame number in a dark box at the top left, readable on any image."""
    cell = cell.copy()
    text = str(index)
    scale = max(0.35, cell.shape[0] / 360)  # ~1/12 of the cell height, legible at 64 px too
    thickness = max(1, round(scale * 1.5))
    (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, text_height // 3)
    cv2.rectangle(cell, (0, 0), (text_width + 2 * pad, text_height + baseline + 2 * pad), _LABEL_BOX, cv2.FILLED)
    cv2.putText(cell, text, (pad, pad + text_height), cv2.FONT_HERSHEY_SIMPLEX, scale, _LABEL_TEXT, thickness, cv2.LINE_AA)
    return cell


# ---------------------------------------------------------------- files


def write_contact_sheet(
    workdir: Path, info: video.VideoInfo, size: tuple[int, int], start: int, end: int,
    every: int, path: Path, columns: int = 4, thumbnail: int = 480,
) -> Path:
    """A PNG sheet of every `every`-th finished frame in [start, end) next to its source."""
    picked = pick_every(WorkDir(workdir).finished(start, end), every)
    if not picked:
        raise InputError(f"{workdir}: no finished frames in {start}-{end - 1} for a contact sheet")
    images.save_rgb(path, contact_sheet(read_pairs(workdir, info, size, picked), columns, thumbnail))
    return Path(path)


def write_side_by_side(
    workdir: Path, info: video.VideoInfo, size: tuple[int, int], start: int, end: int,
    output: Path, audio_from: Path | None = None,
) -> Path:
    """A (source | stylized) video of [start, end) at the source's fps, with its sound."""
    finished = WorkDir(workdir).finished(start, end)
    if len(finished) != end - start:
        raise InputError(f"{workdir}: only {len(finished)} of {end - start} frames are rendered; "
                         "the side-by-side video needs all of them")
    # The composed frames live next to the finished ones: same disk, and 1080p PNGs can be many GB.
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".compare-") as temporary:
        pattern = str(Path(temporary) / "%06d.png")
        for index, source, stylized in read_pairs(workdir, info, size, finished):
            _write_temporary_png(pattern % index, side_by_side(source, stylized))
        video.encode_video(pattern, start, end - start, Path(output), info.fps,
                           audio_from=audio_from, audio_start_frame=start)
    return Path(output)


def _write_temporary_png(path: str, rgb: np.ndarray) -> None:
    # Throw-away frames: fast compression and no fsync (save_rgb's atomic write is for keepers).
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise RuntimeError(f"{path}: OpenCV could not write the frame")
