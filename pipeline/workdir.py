"""The work directory: a render's finished frames on disk, and everything that reads them.

Layout (frame numbers are source frame numbers):
    manifest.json                 what the frames depend on (inputs, settings, weights)
    frames/NNNNNN.png, stats/     every frame of the clip, with its optimization statistics
    warmup/FFFFFF/frames, stats/  warm-up frames of the chunk starting at frame FFFFFF
    final/                        blended frames for encoding (only when there are warm-ups)
    report.html

No TensorFlow here: the report, previews and `cli.py eval` read work directories too.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from . import images
from .chunks import Chunk, blend, blend_weight
from .errors import InputError
from .files import write_atomically

if TYPE_CHECKING:
    from .stylize import FrameResult


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_is_an_input_error(where: Path, what: str) -> Iterator[None]:
    """No space left: one line; what was finished before stays, so the same command resumes."""
    try:
        yield
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        raise InputError(f"{where}: disk full while writing {what}; "
                         "free space and run the same command again to resume") from None


class WorkDir:
    """Finished frames as lossless PNGs plus their statistics, each written atomically.
    A chunk's warm-up frames live in a WorkDir of their own inside (`warmup(first)`)."""

    def __init__(self, path: Path):
        self.path = path

    def frame_path(self, index: int | str) -> Path:
        name = index if isinstance(index, str) else f"{index:06d}"
        return self.path / "frames" / f"{name}.png"

    def has(self, index: int) -> bool:
        return self.frame_path(index).is_file()

    def finished(self, start: int, end: int) -> list[int]:
        """Indices in [start, end) whose frame is on disk."""
        return [index for index in range(start, end) if self.has(index)]

    def read_stats(self, indices) -> dict[int, dict]:
        """Per-frame stats; a frame whose PNG landed but whose stats did not (a crash) is left out."""
        paths = {index: self.path / "stats" / f"{index:06d}.json" for index in indices}
        return {index: json.loads(path.read_text()) for index, path in paths.items() if path.is_file()}

    def warmup(self, chunk_first: int) -> "WorkDir":
        return WorkDir(self.path / "warmup" / f"{chunk_first:06d}")

    def warmup_starts(self) -> list[int]:
        """First frames of the chunks that have warm-up frames here."""
        return sorted(int(folder.name) for folder in (self.path / "warmup").glob("[0-9]*"))

    def load(self, index: int) -> np.ndarray:
        return images.load_rgb(self.frame_path(index))

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def save(self, index: int, result: FrameResult) -> None:
        """Statistics first, the frame last: the PNG is what marks the frame finished."""
        stats = {"losses": result.losses, "evaluations": result.evaluations,
                 "stop_reason": result.stop_reason, "seconds": result.seconds, "trace": result.trace}
        write_atomically(self.path / "stats" / f"{index:06d}.json", json.dumps(stats, indent=1).encode())
        images.save_rgb(self.frame_path(index), result.image)

    def read_manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise InputError(f"{self.manifest_path}: unreadable ({error}); use --restart to discard the work directory") from None

    def open(self, expected: dict, restart: bool = False) -> None:
        """Create the directory, or check that what is in it was made by the same job."""
        if restart and self.path.exists():
            # The manifest goes first: a restart killed half way leaves frames without one,
            # which the next run refuses instead of trusting.
            self.manifest_path.unlink(missing_ok=True)
            shutil.rmtree(self.path)
        found = self.read_manifest()
        if found is not None:
            expected_json = json.loads(json.dumps(expected))  # tuples read back as lists
            changed = sorted(key for key in expected_json if found.get(key) != expected_json[key])
            if changed:
                raise InputError(
                    f"{self.path}: holds frames of a different render ({', '.join(changed)} changed); "
                    "use --restart to discard them or --workdir to render elsewhere")
            self.remove_stale_temporaries()
            return
        if any((self.path / "frames").glob("*.png")):
            raise InputError(f"{self.path}: holds frames but no manifest.json (of which render?); "
                             "use --restart to discard them or --workdir to render elsewhere")
        try:
            (self.path / "frames").mkdir(parents=True, exist_ok=True)
            (self.path / "stats").mkdir(exist_ok=True)
        except OSError as error:
            raise InputError(f"{self.path}: cannot create the work directory ({error.strerror})") from None
        self.remove_stale_temporaries()
        with disk_full_is_an_input_error(self.path, "manifest.json"):
            write_atomically(self.manifest_path, json.dumps(expected, indent=1).encode())

    def remove_stale_temporaries(self) -> None:
        """Temporaries of files.write_atomically (`.NAME.PID.tmp`) whose writer was killed."""
        warmups = [self.warmup(first).path for first in self.warmup_starts()]
        for root in (self.path, *warmups):
            for folder in (root, root / "frames", root / "stats"):
                remove_stale(folder.glob(".*.tmp"), r"\.(\d+)\.tmp$")


class ChunkFrames:
    """A chunk's view of the work directory: its own frames in frames/, its warm-up in warmup/."""

    def __init__(self, work: WorkDir, chunk: Chunk):
        self.path, self.own, self.warmup, self.first = work.path, work, work.warmup(chunk.first), chunk.first

    def _holder(self, index: int) -> WorkDir:
        return self.own if index >= self.first else self.warmup

    def has(self, index: int) -> bool:
        return self._holder(index).has(index)

    def load(self, index: int) -> np.ndarray:
        return self._holder(index).load(index)

    def save(self, index: int, result: FrameResult) -> None:
        holder = self._holder(index)
        holder.frame_path(index).parent.mkdir(parents=True, exist_ok=True)
        (holder.path / "stats").mkdir(exist_ok=True)
        holder.save(index, result)


class FinalFrames:
    """The frames as encoded: each chunk's own frames, cross-faded over the warm-up of the
    chunk after it (see chunks.py), so the jump between two warm-start chains is spread out."""

    def __init__(self, work: WorkDir, start: int, overlap: int):
        self.work = work
        self.chunks = [Chunk(first, first, min(overlap, first - start)) for first in work.warmup_starts()]

    def _covering(self, index: int) -> list[Chunk]:
        return [c for c in self.chunks if c.begin <= index < c.first and self.work.warmup(c.first).has(index)]

    def load(self, index: int) -> np.ndarray:
        frame = self.work.load(index)
        for chunk in self._covering(index):
            frame = blend(frame, self.work.warmup(chunk.first).load(index), blend_weight(chunk, index))
        return frame

    def folder_for_encoding(self, start: int, end: int) -> Path:
        """frames/ itself when nothing is blended, else final/ with blended frames and links."""
        if not any(self._covering(i) for i in range(start, end)):
            return self.work.path / "frames"
        final = self.work.path / "final"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        for index in range(start, end):
            target = final / f"{index:06d}.png"
            if self._covering(index):
                images.save_rgb(target, self.load(index))
            else:
                _link_or_copy(self.work.frame_path(index), target)
        return final


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # no copy of every unblended frame where the file system allows
    except OSError:
        shutil.copyfile(source, target)


def remove_stale(paths: Iterator[Path], pid_pattern: str) -> None:
    """Delete the temporaries among `paths` whose writing process (pid in the name) is gone;
    another live writer's (two farm workers on one directory) are left alone."""
    for path in paths:
        match = re.search(pid_pattern, path.name)
        if match and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier attempt in this process: not being written now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
