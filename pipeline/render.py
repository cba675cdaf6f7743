"""The frame loop: a work directory of finished frames, resumable at any frame.

`render_frames(job, first, last)` is the one unit of work: it stylizes frames [first, last) of
the clip into the work directory, skips frames already there and warm-starts from the frame
before `first` when that one is finished. A whole render, a resumed render and (later) a
farm worker all make this same call; `assemble` then encodes the frames into the output.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import flow, images, video
from .config import Job
from .errors import InputError
from .files import file_sha256, write_atomically
from .stylize import FrameResult, Iterate, Stylizer, TemporalGuide
from .weights import VGGWeights, load_vgg16_weights


@dataclass(frozen=True)
class Started:
    """Rendering begins: `total` frames in the range, `done` of them already finished."""

    total: int
    done: int


@dataclass(frozen=True)
class FrameDone:
    """A frame is finished: `result` is None when it was already on disk."""

    index: int
    result: FrameResult | None


ProgressCallback = Callable[[Started | Iterate | FrameDone], None]


@dataclass(frozen=True)
class Plan:
    """What a job resolves to once the clip is probed."""

    info: video.VideoInfo
    size: tuple[int, int]  # (width, height) of the stylized frames
    start: int
    end: int


def plan(job: Job) -> Plan:
    """Probe and check every input before hours of rendering depend on it."""
    info = video.probe(job.video)
    images.load_rgb(job.style)
    count = info.frame_count
    end = count if job.end is None else min(job.end, count)
    if job.start < 0:
        raise InputError(f"{job.video}: --start {job.start} is negative (the clip has {count} frames, 0-{count - 1})")
    if job.start >= count:
        raise InputError(f"{job.video}: --start {job.start} is past the last frame (the clip has {count} frames, 0-{count - 1})")
    if end <= job.start:
        raise InputError(f"{job.video}: --end {job.end} must be above --start {job.start} (the clip has {count} frames)")
    return Plan(info, video.output_size(info, job.settings.size), job.start, end)


def render(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    """Render the job's whole range, resuming what is already done, and encode the output."""
    job_plan = plan(job)
    video.check_output(job.output_path)  # before the work directory is created beside it
    WorkDir(job.workdir_path).open(manifest(job, job_plan), restart)
    render_frames(job, job_plan.start, job_plan.end, on_progress, job_plan)
    return assemble(job, job_plan)


def render_frames(
    job: Job, first: int, last: int, on_progress: ProgressCallback | None = None, job_plan: Plan | None = None
) -> list[int]:
    """Stylize frames [first, last) into the work directory; returns the indices it rendered."""
    job_plan = job_plan or plan(job)
    work = WorkDir(job.workdir_path)
    notify = on_progress or (lambda event: None)
    missing = [i for i in range(first, last) if not work.has(i)]
    notify(Started(last - first, last - first - len(missing)))
    if not missing:
        return []
    stylizer = _stylizer(job, job_plan)
    rendered = []
    for index, source, previous in _frames_with_previous(job, job_plan, work, missing[0], last):
        if work.has(index):
            continue
        result = stylize_frame(job, stylizer, source, previous, notify)
        work.save(index, result)
        rendered.append(index)
        notify(FrameDone(index, result))
    return rendered


@dataclass(frozen=True)
class Previous:
    source: np.ndarray
    stylized: np.ndarray


def _frames_with_previous(job: Job, job_plan: Plan, work: "WorkDir", first: int, last: int) -> Iterator[tuple[int, np.ndarray, Previous | None]]:
    """Source frames from `first` with the finished frame before each, read back from disk so
    a resumed chain starts from exactly what an uninterrupted one would have."""
    seed = first - 1 if first > job_plan.start and work.has(first - 1) else first
    frames = video.read_frames(job_plan.info, seed, last, job_plan.size)
    previous = None
    for index, source in zip(range(seed, last), frames):
        if index >= first:
            yield index, source, previous
        previous = Previous(source, work.load(index)) if work.has(index) else None


def stylize_frame(job: Job, stylizer: Stylizer, source: np.ndarray, previous: Previous | None, notify) -> FrameResult:
    settings = job.settings
    if previous is None:
        return stylizer.stylize(source, source, settings.first_frame_iterations, on_iterate=notify)
    guide = None
    if settings.temporal_weight > 0 or settings.init == "previous-warped":
        warped, reliability = flow.temporal_guide(previous.source, source, previous.stylized, settings.flow)
        guide = TemporalGuide(warped, reliability)
    start = {"content": source, "previous": previous.stylized}.get(settings.init, guide.warped if guide else None)
    return stylizer.stylize(source, start, settings.frame_iterations, guide, on_iterate=notify)


_weights_cache: dict[Path | None, VGGWeights] = {}


def vgg_weights(job: Job) -> VGGWeights:
    """The job's weights, loaded once per process."""
    if job.weights not in _weights_cache:
        _weights_cache[job.weights] = load_vgg16_weights(job.weights)
    return _weights_cache[job.weights]


def _stylizer(job: Job, job_plan: Plan) -> Stylizer:
    style = images.load_rgb(job.style)
    width, height = job_plan.size
    return Stylizer(job.settings, vgg_weights(job), style, (height, width))


def assemble(job: Job, job_plan: Plan) -> Path:
    """Encode the finished frames of the range into the output (video or image sequence)."""
    work = WorkDir(job.workdir_path)
    absent = [i for i in range(job_plan.start, job_plan.end) if not work.has(i)]
    if absent:
        raise InputError(f"{work.path}: frames not rendered yet: {_ranges(absent)}")
    output = job.output_path
    if "%" in output.name:
        for index in range(job_plan.start, job_plan.end):
            images.save_rgb(Path(str(output) % index), work.load(index))
    else:
        video.encode_video(
            str(work.frame_path("%06d")), job_plan.start, job_plan.end - job_plan.start, output,
            job_plan.info.fps, audio_from=job.video, audio_start_frame=job_plan.start,
        )
    return output


def _ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'"""
    spans, begin = [], indices[0]
    for previous, current in zip(indices, indices[1:] + [None]):
        if current != previous + 1:
            spans.append(f"{begin}-{previous}" if previous > begin else str(begin))
            begin = current
    return ", ".join(spans)


def manifest(job: Job, job_plan: Plan) -> dict:
    """What the frames in a work directory depend on; a resume must match it exactly."""
    weights = vgg_weights(job)
    return {
        "video": {"path": str(job.video.resolve()), "sha256": file_sha256(job.video)},
        "style": {"path": str(job.style.resolve()), "sha256": file_sha256(job.style)},
        "size": list(job_plan.size),
        "fps": str(job_plan.info.fps),
        "weights": {"source": weights.source, "sha256": weights.sha256},
        "settings": job.settings.to_dict(),
    }



class WorkDir:
    """Finished frames as lossless PNGs plus their statistics, each written atomically."""

    def __init__(self, path: Path):
        self.path = path

    def frame_path(self, index: int | str) -> Path:
        name = index if isinstance(index, str) else f"{index:06d}"
        return self.path / "frames" / f"{name}.png"

    def has(self, index: int) -> bool:
        return self.frame_path(index).is_file()

    def load(self, index: int) -> np.ndarray:
        return images.load_rgb(self.frame_path(index))

    def save(self, index: int, result: FrameResult) -> None:
        images.save_rgb(self.frame_path(index), result.image)
        stats = {"losses": result.losses, "evaluations": result.evaluations,
                 "stop_reason": result.stop_reason, "seconds": result.seconds, "trace": result.trace}
        write_atomically(self.path / "stats" / f"{index:06d}.json", json.dumps(stats, indent=1).encode())

    def open(self, expected: dict, restart: bool = False) -> None:
        """Create the directory, or check that what is in it was made by the same job."""
        manifest_path = self.path / "manifest.json"
        if restart and self.path.exists():
            shutil.rmtree(self.path)
        if manifest_path.is_file():
            found = json.loads(manifest_path.read_text())
            changed = sorted(key for key in expected if found.get(key) != expected[key])
            if changed:
                raise InputError(
                    f"{self.path}: holds frames of a different render ({', '.join(changed)} changed); "
                    "use --restart to discard them or --workdir to render elsewhere")
            return
        try:
            (self.path / "frames").mkdir(parents=True, exist_ok=True)
            (self.path / "stats").mkdir(exist_ok=True)
        except OSError as error:
            raise InputError(f"{self.path}: cannot create the work directory ({error.strerror})") from None
        write_atomically(manifest_path, json.dumps(expected, indent=1).encode())
