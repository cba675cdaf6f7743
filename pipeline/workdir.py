"""The work directory: a render's finished frames on disk, and everything that reads them.

Layout (frames are numbered by position in the clip: a video's own frame numbers; for an image
sequence starting at 1001, 000000 is frame 1001):
    manifest.json                 what the frames depend on (inputs, settings, weights)
    frames/NNNNNN.png, stats/     every frame of the clip, with its optimization statistics;
                                  a frame's stats hold its checksum and the checksum of the
                                  frame its chain started from
    warmup/FFFFFF/frames, stats/  warm-up frames of the chunk starting at frame FFFFFF
    stitched/FFFFFF/...           the border into chunk FFFFFF, re-optimized (see stitch.py)
    final/                        the frames at 8 bits, as a video encodes them
    outputs.json                  the outputs this work directory wrote, to know it may replace them
    report.html, .lock

Frames are 16-bit PNGs of the optimizer's float levels (images.to_uint16), so 16-bit and EXR
outputs get its precision. Everything 8-bit (the chain itself, videos, the report, eval, previews)
reads them at 8 bits (`load`): the float levels rounded, the pixels an 8-bit frame held. Work
directories from before hold 8-bit PNGs; both depths read the same way, so their renders resume.

A work directory deletes only the entries of this layout, and never adopts a folder that holds
anything else: a user's clip beside the frames is never at risk.

No TensorFlow here: the report, previews and `cli.py eval` read work directories too.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import numpy as np

from . import images
from .chunks import Chunk
from .errors import DiskFull, InputError
from .files import create_atomically, file_sha256, sha256_of, write_atomically

if TYPE_CHECKING:
    from .stylize import FrameResult


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
LAYOUT = ("manifest.json", "frames", "stats", "warmup", "stitched", "final", "outputs.json", "report.html", ".lock")
# write_atomically's temporaries of the files above (`.manifest.json.1234.tmp`)
_OWN_TEMPORARY = re.compile(r"^\.(manifest\.json|outputs\.json|report\.html)\.\d+\.tmp$")


class NotAWorkDir(InputError):
    """A folder that holds files of its own was given as the work directory."""


class Difference(NamedTuple):
    """One entry of two manifests' identities that differs: its dotted name, old and new value."""

    name: str
    old: Any
    new: Any

    def __str__(self) -> str:
        """Named: 'settings.style_weight 10.0 -> 20.0', or 'style content differs (…)'."""
        if self.name.endswith("sha256") and self.old and self.new:
            return f"{self.name.removesuffix('.sha256')} content differs ({self.old[:12]} -> {self.new[:12]})"
        return f"{self.name} {self.old!r} -> {self.new!r}"


class DifferentRender(InputError):
    """The work directory holds frames of a render that differs in what affects pixels."""

    def __init__(self, path: Path, differences: list[Difference | str], finished: int):
        self.path, self.differences, self.finished = path, differences, finished
        super().__init__(f"{path}: holds {finished} finished frame(s) of a different render: "
                         f"{'; '.join(map(str, differences))}")


class WorkDirBusy(InputError):
    """Another process renders into the same work directory right now."""


class DamagedFrames(InputError):
    """Finished frames that fail their check and must be rendered again."""


def identity_differences(found: dict, expected: dict, prefix: str = "") -> list[Difference]:
    """What differs between two manifests' identities, entry by entry."""
    differences = []
    for key in sorted(set(found) | set(expected)):
        old, new, name = found.get(key), expected.get(key), f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            differences += identity_differences(old, new, f"{name}.")
        elif old != new:
            differences.append(Difference(name, old, new))
    return differences


@contextlib.contextmanager
def disk_full_is_an_input_error(where: Path, what: str) -> Iterator[None]:
    """No space left: one line; what was finished before stays, so the same command resumes."""
    try:
        yield
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        raise DiskFull(f"{where}: disk full while writing {what}") from None


class WorkDir:
    """Finished frames as lossless 16-bit PNGs plus their statistics, each written atomically.
    A chunk's warm-up frames live in a WorkDir of their own inside (`warmup(first)`)."""

    def __init__(self, path: Path):
        self.path = path

    def frame_path(self, index: int | str) -> Path:
        name = index if isinstance(index, str) else f"{index:06d}"
        return self.path / "frames" / f"{name}.png"

    def has(self, index: int) -> bool:
        return self.frame_path(index).is_file()

    def stats_path(self, index: int) -> Path:
        return self.path / "stats" / f"{index:06d}.json"

    def checksum(self, index: int) -> str | None:
        """The frame's sha256 as recorded when it was written (None: not recorded)."""
        stats = self._stats(index)
        return stats.get("sha256") if stats else None

    def damage(self, index: int, size: tuple[int, int] | None = None) -> str | None:
        """Why the finished frame `index` cannot be trusted, or None: its PNG must match the
        checksum recorded in its stats (frames from before checksums: decode and measure)."""
        stats = self._stats(index)
        if stats is None:
            return "its statistics are missing or unreadable"
        recorded = stats.get("sha256")
        if recorded is None:
            return self._decode_problem(index, size)
        if file_sha256(self.frame_path(index)) != recorded:
            return "damaged (checksum mismatch)"
        return None

    def continues(self, index: int, previous_checksum: str | None) -> bool:
        """Whether frame `index` belongs after the frame whose checksum is given: it started cold,
        or it warm-started from exactly that frame."""
        seed = (self._stats(index) or {}).get("seed")
        return seed is None or seed == previous_checksum

    def _decode_problem(self, index: int, size: tuple[int, int] | None) -> str | None:
        try:
            frame = self.load(index)
        except InputError:
            return "damaged (cannot be decoded)"
        if size is not None and (frame.shape[1], frame.shape[0]) != tuple(size):
            return f"wrong size {frame.shape[1]}x{frame.shape[0]}"
        return None

    def _stats(self, index: int) -> dict | None:
        try:
            stats = json.loads(self.stats_path(index).read_text())
        except (OSError, ValueError):
            return None
        return stats if isinstance(stats, dict) else None

    def discard_frame(self, index: int) -> None:
        """Remove a frame that failed its check (its stats first: the PNG marks a finished frame)."""
        self.frame_path(index).unlink(missing_ok=True)
        self.stats_path(index).unlink(missing_ok=True)

    def finished(self, start: int, end: int) -> list[int]:
        """Indices in [start, end) whose frame is on disk."""
        return [index for index in range(start, end) if self.has(index)]

    def read_stats(self, indices) -> dict[int, dict]:
        """Per-frame stats; a frame whose PNG landed but whose stats did not (a crash) is left out."""
        found = {index: self._stats(index) for index in indices}
        return {index: stats for index, stats in found.items() if stats is not None}

    def warmup(self, chunk_first: int) -> "WorkDir":
        return WorkDir(self.path / "warmup" / f"{chunk_first:06d}")

    def warmup_starts(self) -> list[int]:
        """First frames of the chunks that have warm-up frames here."""
        return sorted(int(folder.name) for folder in (self.path / "warmup").glob("[0-9]*"))

    def load(self, index: int) -> np.ndarray:
        """RGB uint8: what the chain continues from and every 8-bit reader gets."""
        return images.load_rgb(self.frame_path(index))

    def load16(self, index: int) -> np.ndarray:
        """RGB uint16: the frame as stored, for outputs with depth (an 8-bit frame from before, x257)."""
        return images.load_rgb16(self.frame_path(index))

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def save(self, index: int, result: FrameResult, seed: str | None = None) -> str:
        """Statistics first, the frame last: the PNG is what marks the frame finished. The stats
        record the PNG's checksum and `seed`, the checksum of the frame this one warm-started
        from. Returns the frame's checksum."""
        png = images.encode_image(".png", images.to_uint16(result.levels))
        stats = {"sha256": sha256_of(png), "seed": seed, "losses": result.losses, "evaluations": result.evaluations,
                 "coarse_evaluations": result.coarse_evaluations,
                 "stop_reason": result.stop_reason, "start": result.start, "seconds": result.seconds,
                 "trace": result.trace}
        write_atomically(self.stats_path(index), json.dumps(stats, indent=1).encode())
        write_atomically(self.frame_path(index), png)
        return stats["sha256"]

    def read_manifest(self) -> dict | None:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise InputError(f"{self.manifest_path}: unreadable ({error})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
            raise InputError(f"{self.manifest_path}: not a manifest of this program (no identity object)")
        return _renamed_optimizer(manifest)

    # ------------------------------------------------------------ owning the folder

    def claim(self) -> None:
        """Create the directory, or check that it is one: nothing in it but this layout."""
        if self.path.exists() and not self.path.is_dir():
            raise NotAWorkDir(f"{self.path}: is a file, not a work directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            foreign = sorted(entry.name for entry in self.path.iterdir() if not _in_layout(entry.name))
        except OSError as error:
            raise InputError(f"{self.path}: cannot create the work directory ({error.strerror})") from None
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise NotAWorkDir(f"{self.path}: not a work directory (it holds {shown}); "
                              "choose a new or empty folder for the frames")

    @contextlib.contextmanager
    def locked(self, shared: bool = False, wait: bool = False) -> Iterator[None]:
        """Hold the work directory: one whole render at a time (exclusive), or several farm
        ranges side by side (shared). An OS lock: the kernel releases it when a process dies."""
        self.claim()
        descriptor = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            try:
                fcntl.flock(descriptor, mode if wait else mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkDirBusy(f"{self.path}: in use by another render ({_holder(descriptor)})") from None
            _write_holder(descriptor)
            yield
        finally:
            os.close(descriptor)

    def discard(self) -> int:
        """Delete what this layout names (the manifest first: a discard killed half way leaves
        frames without one, which the next run refuses instead of trusting); returns how many
        finished frames went."""
        finished = len(list((self.path / "frames").glob("*.png")))
        self.manifest_path.unlink(missing_ok=True)
        for name in LAYOUT:
            entry = self.path / name
            if name in (".lock", "outputs.json"):
                continue  # held by us right now; what we wrote is still ours to replace
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        return finished

    def open(self, expected: dict, restart: bool = False) -> bool:
        """Create the directory, or check that what is in it was made by the same job: the
        same `identity` (what affects pixels); where the files sit does not matter. False: another
        farm task wrote its manifest between this one's look and its write; that one stands, and
        nothing was checked (open again, to check against it)."""
        self.claim()
        if restart:
            self.discard()
        found = self.read_manifest()
        if found is not None:
            expected_json = json.loads(json.dumps(expected))  # tuples read back as lists
            differences = identity_differences(found["identity"], expected_json["identity"])
            if differences:
                raise DifferentRender(self.path, differences, len(list((self.path / "frames").glob("*.png"))))
            if found != expected_json:  # the same render, its files seen from elsewhere: note where
                with disk_full_is_an_input_error(self.path, "manifest.json"):
                    write_atomically(self.manifest_path, json.dumps(expected, indent=1).encode())
            self.remove_stale_temporaries()
            return True
        finished = len(list((self.path / "frames").glob("*.png")))
        if finished:
            raise DifferentRender(self.path, ["manifest.json is missing, so which render they belong to is unknown"],
                                  finished)
        (self.path / "frames").mkdir(exist_ok=True)
        (self.path / "stats").mkdir(exist_ok=True)
        self.remove_stale_temporaries()
        with disk_full_is_an_input_error(self.path, "manifest.json"):
            return create_atomically(self.manifest_path, json.dumps(expected, indent=1).encode())

    # ------------------------------------------------------------ outputs it wrote

    def wrote(self, output: Path, record: dict | None = None) -> bool:
        """Whether `output` is, unchanged, a file this work directory wrote. Outputs are known by
        their place relative to the work directory, so a shot folder that moves keeps them."""
        entry = (self._outputs() if record is None else record).get(self._key(output))
        if not isinstance(entry, dict) or not output.is_file():
            return False
        stat = output.stat()
        if stat.st_size != entry.get("size"):
            return False
        return stat.st_mtime_ns == entry.get("mtime_ns") or file_sha256(output) == entry.get("sha256")

    def record_outputs(self, outputs: list[Path]) -> None:
        written = {**self._outputs(), **{self._key(path): _file_record(path) for path in outputs}}
        write_atomically(self.path / "outputs.json", json.dumps(written, indent=0).encode())

    def _key(self, output: Path) -> str:
        return os.path.relpath(os.path.realpath(output), os.path.realpath(self.path))

    def _outputs(self) -> dict:
        try:
            record = json.loads((self.path / "outputs.json").read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def refuse_replacing(self, outputs: list[Path]) -> None:
        """InputError naming the first existing output that this work directory did not write."""
        record = self._outputs()
        for output in outputs:
            if output.exists() and not self.wrote(output, record):
                raise OutputExists(f"{output}: exists and was not written by this render; refusing to replace it")

    def remove_stale_temporaries(self) -> None:
        """Temporaries of files.write_atomically (`.NAME.PID.tmp`) whose writer was killed."""
        warmups = [self.warmup(first).path for first in self.warmup_starts()]
        stitches = list((self.path / "stitched").glob("[0-9]*"))
        for root in (self.path, *warmups, *stitches):
            for folder in (root, root / "frames", root / "stats"):
                remove_stale(folder.glob(".*.tmp"), r"\.(\d+)\.tmp$")


class OutputExists(InputError):
    """An output file is in the way and this render did not write it."""


def _renamed_optimizer(manifest: dict) -> dict:
    """Manifests written before the device optimizer existed said "lbfgs" for SciPy's, which is
    now "scipy-lbfgs": read them so, and a render started then resumes unchanged."""
    settings = manifest["identity"].get("settings")
    if manifest.get("optimizer_names", 1) < 2 and isinstance(settings, dict) and settings.get("optimizer") == "lbfgs":
        settings["optimizer"] = "scipy-lbfgs"
    return manifest


def _in_layout(name: str) -> bool:
    return name in LAYOUT or bool(_OWN_TEMPORARY.match(name))


def _file_record(path: Path) -> dict:
    """Size and time tell our file from one put there since; the checksum survives a copy."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)}


def _write_holder(descriptor: int) -> None:
    note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}: {' '.join(sys.argv)}"
    with contextlib.suppress(OSError):
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, note.encode()[:500], 0)


def _holder(descriptor: int) -> str:
    with contextlib.suppress(OSError):
        note = os.pread(descriptor, 500, 0).decode(errors="replace").strip()
        if note:
            return note
    return "holder unknown"


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

    def checksum(self, index: int) -> str | None:
        return self._holder(index).checksum(index)

    def damage(self, index: int, size: tuple[int, int] | None = None) -> str | None:
        return self._holder(index).damage(index, size)

    def continues(self, index: int, previous_checksum: str | None) -> bool:
        return self._holder(index).continues(index, previous_checksum)

    def discard_frame(self, index: int) -> None:
        self._holder(index).discard_frame(index)

    def save(self, index: int, result: FrameResult, seed: str | None = None) -> str:
        holder = self._holder(index)
        holder.frame_path(index).parent.mkdir(parents=True, exist_ok=True)
        (holder.path / "stats").mkdir(exist_ok=True)
        return holder.save(index, result, seed)


class FinalFrames:
    """The frames as encoded: frames/, except before a chunk border whose stitch is on disk,
    where the stitched frames join the two chunks' chains (see stitch.py)."""

    def __init__(self, work: WorkDir):
        self.work = work
        self.stitches = {first: stitch_dir(work, first) for first in stitch_starts(work)}

    def holder(self, index: int) -> WorkDir:
        """Where the encoded frame `index` is: the stitch before the next border, or frames/."""
        after = [first for first in self.stitches if first > index]
        stitch = self.stitches[min(after)] if after else None
        return stitch if stitch is not None and stitch.has(index) else self.work

    def load(self, index: int) -> np.ndarray:
        return self.holder(index).load(index)

    def load16(self, index: int) -> np.ndarray:
        return self.holder(index).load16(index)

    def folder_for_encoding(self, start: int, end: int) -> Path:
        """final/, each frame as an 8-bit PNG: what ffmpeg reads for a video is what 8-bit
        readers get (WorkDir.load), not its own conversion of the 16-bit frame."""
        final = self.work.path / "final"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        for index in range(start, end):  # no fsync: final/ is made again by every encode
            (final / f"{index:06d}.png").write_bytes(images.encode_image(".png", self.load(index)))
        return final


def stitch_dir(work: WorkDir, first: int) -> WorkDir:
    """The stitched frames before the chunk starting at frame `first`."""
    return WorkDir(work.path / "stitched" / f"{first:06d}")


def stitch_starts(work: WorkDir) -> list[int]:
    """First frames of the chunks whose border has stitched frames here."""
    return sorted(int(folder.name) for folder in (work.path / "stitched").glob("[0-9]*"))


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
