"""What a render writes outside its work directory, and the rules that keep user files safe.

An output is a video file or an image sequence named by a printf pattern (`shot.%04d.png`).
Only an output the user names can be a pattern: a clip called `50% off.mp4` gets the plain
default `50% off.stylized.mp4`. No output may ever be one of the render's inputs, and an
existing file is replaced only when this render's work directory wrote it (or when told to).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from .errors import InputError

PRINTF_NUMBER = re.compile(r"%0?(\d*)d")  # the frame number of a pattern, its width captured


def is_sequence_pattern(path: Path) -> bool:
    """`shot.%04d.png` is an image sequence; `50% off.mp4` is a file with a % in its name."""
    return bool(PRINTF_NUMBER.search(path.name))


def output_stem(output: Path, sequence: bool) -> str:
    """The name outputs and work directories derive from: clip.mp4 -> clip, shot.%04d.png -> shot."""
    if sequence:
        return PRINTF_NUMBER.split(output.name)[0].rstrip("._-") or "frames"
    return output.stem


def sequence_members(pattern: Path, first: int, end: int) -> list[Path]:
    """The files an image sequence of frames [first, end) consists of."""
    return [Path(str(pattern) % index) for index in range(first, end)]


def refuse_inputs_as_outputs(outputs: Iterable[Path], inputs: Iterable[Path | None]) -> None:
    """InputError when an output would land on an input file (links resolved)."""
    by_identity = {_identity(path): path for path in inputs if path is not None}
    for output in outputs:
        clash = by_identity.get(_identity(output))
        if clash is not None:
            raise InputError(f"{output}: is an input of this render ({clash}); refusing to overwrite the input")


def _identity(path: Path) -> tuple:
    """Same file <=> same identity, through links, hard links included where the file exists."""
    try:
        stat = os.stat(path)
        return ("inode", stat.st_dev, stat.st_ino)
    except (FileNotFoundError, NotADirectoryError):
        return ("path", os.path.realpath(path))
    except OSError as error:
        raise InputError(f"{path}: cannot be checked ({error.strerror})") from None


def number_ranges(numbers: list[int]) -> str:
    """[1004, 1007, 1008, 1009] -> '1004, 1007-1009'"""
    spans, begin = [], numbers[0]
    for previous, current in zip(numbers, numbers[1:] + [None]):
        if current != previous + 1:
            spans.append(f"{begin}-{previous}" if previous > begin else str(begin))
            begin = current
    return ", ".join(spans)
