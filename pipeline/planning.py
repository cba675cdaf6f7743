"""What a job resolves to, and holding its work directory.

`plan` probes the clip and checks every input; `holding` also checks every output and takes
the work directory (exclusively for a whole render, shared for farm ranges side by side) with
its manifest checked. Everything that renders into a work directory starts here.
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from . import images, sequences, video
from .config import OPTIMIZERS, Job, chosen_optimizer
from .errors import InputError
from .files import file_sha256
from .outputs import refuse_inputs_as_outputs, sequence_members
from .weights import cached_vgg16_weights
from .workdir import WorkDir, identity_differences


@dataclass(frozen=True)
class Plan:
    """What a job resolves to once the clip is probed."""

    info: video.VideoInfo
    size: tuple[int, int]  # (width, height) of the stylized frames
    start: int
    end: int


def plan(job: Job) -> Plan:
    """Probe and check every input before hours of rendering depend on it. Job.start/end are the
    source's frame numbers (a sequence's 1001...); the plan's are positions from 0 in the clip."""
    info = video.probe(job.video, job.fps)
    if job.fps is not None and info.sequence is None:
        raise InputError(f"{job.video}: fps is for image-sequence inputs; a video keeps its own rate ({info.fps})")
    for path in job.style_paths:
        images.load_rgb(path)
    first, count = info.first_number, info.frame_count
    last = first + count - 1
    start = first if job.start is None else job.start
    end = last + 1 if job.end is None else min(job.end, last + 1)
    if start < first:
        raise InputError(f"{job.video}: start {start} is before the first frame (the clip has {count} frames, {first}-{last})")
    if start > last:
        raise InputError(f"{job.video}: start {start} is past the last frame (the clip has {count} frames, {first}-{last})")
    if end <= start:
        raise InputError(f"{job.video}: end {job.end} must be above start {start} (the clip has {count} frames, {first}-{last})")
    return Plan(info, video.output_size(info, job.settings.size), start - first, end - first)


def output_files(job: Job, job_plan: Plan) -> list[Path]:
    """The files the encoded output consists of: one video, or one image per frame."""
    if job.output_is_sequence:
        first = job_plan.info.first_number  # a sequence's outputs keep its frame numbers
        return sequence_members(job.output_path, job_plan.start + first, job_plan.end + first)
    return [job.output_path]


def check_outputs(job: Job, job_plan: Plan, extra: tuple[Path, ...] = ()) -> None:
    """Before anything is rendered: each output can be written, is none of the inputs, and
    replaces no file that this render's work directory did not write (unless `overwrite`)."""
    video.check_output(job.output_path, job.output_is_sequence, job.bit_depth)
    outputs = [*output_files(job, job_plan), *extra]
    clip = job_plan.info.sequence.members if job_plan.info.sequence else [job.video]
    refuse_inputs_as_outputs([*outputs, job.workdir_path / "report.html"], [*clip, *job.style_paths, job.weights])
    if not job.overwrite:
        WorkDir(job.workdir_path).refuse_replacing(outputs)


@contextlib.contextmanager
def holding(job: Job, restart: bool = False, shared: bool = False) -> Iterator[tuple[Job, Plan]]:
    """Check every input and output (creating nothing), then hold the work directory with its
    manifest checked: exclusively for a whole render, shared for farm ranges side by side. Yields
    the job as it renders: "auto" follows the manifest as found under the hold, so farm tasks that
    start together render with one optimizer, the first to write it."""
    job_plan = plan(job)
    check_outputs(job, job_plan)
    work = WorkDir(job.workdir_path)
    with work.locked(shared=shared, wait=job.wait):
        held = with_recorded_optimizer(job, restart)
        if not work.open(manifest(held, job_plan), restart):  # another task's manifest came first
            held = with_recorded_optimizer(job)
            work.open(manifest(held, job_plan))
        # The caller announced the job's own choice; say when the hold found another task's.
        if chosen_optimizer(held.settings.optimizer) != chosen_optimizer(job.settings.optimizer):
            print(f"note: {job.workdir_path}: another task began it with the optimizer "
                  f"{held.settings.optimizer}; this one follows", file=sys.stderr)
        yield held, job_plan


def workdir_state(job: Job) -> str:
    """What the job's work directory holds for it: "empty", "partial", "complete" or "different"
    (frames of another render, which `render` refuses without `restart`)."""
    job_plan = plan(job)
    work = WorkDir(job.workdir_path)
    found = work.read_manifest() if work.manifest_path.is_file() else None
    if found is None:
        return "empty"
    if identity_differences(found["identity"], json.loads(json.dumps(manifest(job, job_plan)["identity"]))):
        return "different"
    done = sum(work.has(i) for i in range(job_plan.start, job_plan.end))
    return "complete" if done == job_plan.end - job_plan.start else "partial" if done else "empty"


def manifest(job: Job, job_plan: Plan) -> dict:
    """What the frames in a work directory depend on, and where its files were."""
    weights = cached_vgg16_weights(job.weights)
    return {
        # What the pixels depend on: a resume must match it exactly. Contents, not paths, so a
        # shot folder that moves (or a farm node mounting it elsewhere) keeps its frames.
        "identity": {
            "video": {"sha256": video_sha256(job_plan.info)},
            "style": style_identity(job),
            "size": list(job_plan.size),
            "fps": str(job_plan.info.fps),
            "weights": {"sha256": weights.sha256},
            "settings": {**job.settings.frame_settings(), "optimizer": chosen_optimizer(job.settings.optimizer)},
        },
        "optimizer_names": 2,  # "lbfgs" is the device optimizer; before, it was SciPy's (workdir.read_manifest)
        # Where the files were last seen, for people reading the report.
        "files": {"video": str(job.video.resolve()), "style": str(job.style[0].path.resolve()),
                  **({"styles": [{"path": str(s.path.resolve()), "weight": s.weight} for s in job.style]}
                     if len(job.style) > 1 else {}),
                  "weights": weights.source},
    }


def with_recorded_optimizer(job: Job, restart: bool = False) -> Job:
    """The job with "auto" made the optimizer its work directory recorded, if there is one: a
    render begun with SciPy's (what "auto" chose on a CPU until 2026-12) goes on with SciPy's, and
    farm tasks that start together follow the first. An optimizer named outright, or `restart`,
    keeps the job's own (a named one that differs is refused as a different render, as before)."""
    if job.settings.optimizer != "auto" or restart:
        return job
    work = WorkDir(job.workdir_path)
    found = work.read_manifest() if work.manifest_path.is_file() else None
    settings = found["identity"].get("settings") if found else None
    recorded = settings.get("optimizer") if isinstance(settings, dict) else None
    if recorded not in OPTIMIZERS or recorded == "auto":
        return job
    return replace(job, settings=replace(job.settings, optimizer=recorded))


def video_sha256(info: video.VideoInfo) -> str:
    """The clip's contents: a video file's checksum, or one over a sequence's frames (see
    sequences.sequence_sha256)."""
    return file_sha256(info.path) if info.sequence is None else sequences.sequence_sha256(info.sequence)


def style_identity(job: Job) -> dict:
    """One painting: its sha256 (as before blends existed, so earlier work directories resume);
    a blend: every painting's sha256 and weight, in order."""
    if len(job.style) == 1:
        return {"sha256": file_sha256(job.style[0].path)}
    return {"blend": [{"sha256": file_sha256(s.path), "weight": s.weight} for s in job.style]}
