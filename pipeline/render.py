"""The frame loop: a work directory of finished frames, resumable at any frame.

`render_frames(job, chunk)` is the one unit of work: it stylizes one chunk of the clip into the
work directory, skipping frames already there and resuming its warm-start chain from its last
finished frame. A whole render (one chunk), a farm task (`--frames`) and a Ray worker all make
this same call; `assemble` then encodes the output, with each chunk border's stitch
(stitch.py) in place of the earlier chunk's last frames.

The work directory and its layout are in workdir.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from . import flow, images, video
from .chunks import Chunk, chunk_for_range
from .config import Job
from .errors import InputError
from .files import file_sha256
from .outputs import refuse_inputs_as_outputs, sequence_members
from .workdir import (ChunkFrames, DamagedFrames, FinalFrames, WorkDir, disk_full_is_an_input_error,
                      identity_differences, remove_stale)
from .stylize import FrameResult, Iterate, StyleImage, Stylizer, TemporalGuide, long_term_guide
from .stitch import stitch_missing
from .weights import VGGWeights, load_vgg16_weights


@dataclass(frozen=True)
class Started:
    """Rendering begins: `total` frames in the range, `done` of them already finished."""

    total: int
    done: int


@dataclass(frozen=True)
class Progressed:
    """Frames finished so far, counted by a driver that does not render them itself (Ray)."""

    done: int


@dataclass(frozen=True)
class FrameRejected:
    """A finished frame failed its check and will be rendered again."""

    index: int
    reason: str


@dataclass(frozen=True)
class FrameDone:
    """A frame has just been rendered (frames found on disk are counted in `Started.done`)."""

    index: int
    result: FrameResult


ProgressCallback = Callable[[Started | Progressed | Iterate | FrameRejected | FrameDone], None]


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
    for path in job.style_paths:
        images.load_rgb(path)
    count = info.frame_count
    end = count if job.end is None else min(job.end, count)
    if job.start < 0:
        raise InputError(f"{job.video}: --start {job.start} is negative (the clip has {count} frames, 0-{count - 1})")
    if job.start >= count:
        raise InputError(f"{job.video}: --start {job.start} is past the last frame (the clip has {count} frames, 0-{count - 1})")
    if end <= job.start:
        raise InputError(f"{job.video}: --end {job.end} must be above --start {job.start} (the clip has {count} frames)")
    return Plan(info, video.output_size(info, job.settings.size), job.start, end)


def prepare(job: Job, restart: bool = False) -> Plan:
    """Check the inputs and the outputs, then create or check the work directory."""
    job_plan = plan(job)
    check_outputs(job, job_plan)
    WorkDir(job.workdir_path).open(manifest(job, job_plan), restart)
    return job_plan


def output_files(job: Job, job_plan: Plan) -> list[Path]:
    """The files the encoded output consists of: one video, or one image per frame."""
    if job.output_is_sequence:
        return sequence_members(job.output_path, job_plan.start, job_plan.end)
    return [job.output_path]


def check_outputs(job: Job, job_plan: Plan, extra: tuple[Path, ...] = ()) -> None:
    """Before anything is rendered: each output can be written, is none of the inputs, and
    replaces no file that this render's work directory did not write (unless `overwrite`)."""
    video.check_output(job.output_path, job.output_is_sequence)
    outputs = [*output_files(job, job_plan), *extra]
    refuse_inputs_as_outputs([*outputs, job.workdir_path / "report.html"], [job.video, *job.style_paths, job.weights])
    if not job.overwrite:
        WorkDir(job.workdir_path).refuse_replacing(outputs)


@contextlib.contextmanager
def holding(job: Job, restart: bool = False, shared: bool = False) -> Iterator[Plan]:
    """Check every input and output (creating nothing), then hold the work directory with its
    manifest checked: exclusively for a whole render, shared for farm ranges side by side."""
    job_plan = plan(job)
    check_outputs(job, job_plan)
    work = WorkDir(job.workdir_path)
    with work.locked(shared=shared, wait=job.wait):
        work.open(manifest(job, job_plan), restart)
        yield job_plan


def render(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    """Render the job's whole range, resuming what is already done, and encode the output."""
    with holding(job, restart) as job_plan:
        render_frames(job, Chunk(job_plan.start, job_plan.end), on_progress, job_plan, continue_chain=True)
        return finish(job, job_plan)


def assemble_only(job: Job) -> Path:
    """Encode the output from frames rendered earlier (farm ranges); refuses while any is missing."""
    with holding(job) as job_plan:
        return finish(job, job_plan)


def render_anywhere(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    """`render`, or its chunks on Ray when the settings name a cluster (Ray loads only then)."""
    if job.settings.ray:
        from .farm import render_on_ray

        return render_on_ray(job, on_progress, restart)
    return render(job, on_progress, restart)


def render_range(job: Job, first: int, last: int, on_progress: ProgressCallback | None = None) -> Plan:
    """A farm task: frames [first, last) as their own chunk (warm-up and all), no encoding.
    Deterministic and idempotent, so a farm manager may retry it or run ranges side by side."""
    with holding(job, shared=True) as job_plan:
        if not job_plan.start <= first < last <= job_plan.end:
            raise InputError(f"{job.video}: --frames {first}-{last - 1} is outside the clip's frames "
                             f"{job_plan.start}-{job_plan.end - 1}")
        render_frames(job, chunk_for_range(job_plan.start, first, last, job.settings.overlap), on_progress, job_plan)
        return job_plan


def finish(job: Job, job_plan: Plan) -> Path:
    """Encode the output from the finished frames and write the report."""
    output = assemble(job, job_plan)
    write_report_or_warn(job, job_plan)
    return output


def write_report_or_warn(job: Job, job_plan: Plan) -> Path | None:
    """report.html in the work directory; a finished render never fails because of its report."""
    try:
        from .report import write_report  # matplotlib loads only here

        return write_report(job.workdir_path, job.video, job_plan.start, job_plan.end, job_plan.size, job.output_path)
    except Exception as error:  # noqa: BLE001 - the output is written; the report is only an extra
        print(f"warning: {job.workdir_path / 'report.html'} not written: {error}", file=sys.stderr)
        return None


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


def render_frames(
    job: Job, chunk: Chunk, on_progress: ProgressCallback | None = None, job_plan: Plan | None = None,
    continue_chain: bool = False,
) -> list[int]:
    """Stylize the chunk's frames (warm-up included) into the work directory; returns the
    indices it rendered. With `continue_chain` the chunk's first frame warm-starts from the
    finished frame before it (a local render resuming); without, it starts cold, so the
    result does not depend on what other workers have finished (farm and Ray chunks)."""
    job_plan = job_plan or plan(job)
    work = ChunkFrames(WorkDir(job.workdir_path), chunk)
    notify = on_progress or (lambda event: None)
    indices = range(chunk.begin, chunk.last)
    earliest_seed = job_plan.start if continue_chain else chunk.begin
    trusted = _check_finished(work, indices, job_plan.size, notify)
    notify(Started(len(indices), len(trusted)))
    first = next((i for i in indices if i not in trusted), None)
    if first is None:
        return []
    with _out_of_memory_is_an_input_error(job_plan, first):
        stylizer = stylizer_for(job, job_plan)
    rendered = []
    reach = history_reach(job.settings.temporal_frames)
    for index, source, history in _frames_with_history(job_plan, work, first, chunk.last, earliest_seed, reach):
        previous = history[0] if history else None
        seed = previous.checksum if previous else None
        if work.has(index) and work.continues(index, seed):
            continue
        if work.has(index):
            notify(FrameRejected(index, f"it continued frame {index - 1} as it was before that was rendered again"))
        with _out_of_memory_is_an_input_error(job_plan, index):
            result = stylize_frame(job, stylizer, source, history, _pausing_at(f"optimize:{index}", notify))
        with disk_full_is_an_input_error(work.path, f"frame {index}"), _pause_before_rename(f"frame-write:{index}", ".png"):
            work.save(index, result, seed)
        rendered.append(index)
        notify(FrameDone(index, result))
    return rendered


def _check_finished(work: ChunkFrames, indices: range, size: tuple[int, int], notify) -> set[int]:
    """Check every finished frame before trusting it: a damaged one is removed, with a line
    saying so, and rendered again; so is a frame whose chain predecessor no longer matches."""
    trusted, previous = set(), None
    for index in indices:
        damage = work.damage(index, size) if work.has(index) else "missing"
        if damage is None and (index == indices.start or work.continues(index, previous)):
            trusted.add(index)
            previous = work.checksum(index)
            continue
        if damage not in (None, "missing"):
            notify(FrameRejected(index, damage))
            work.discard_frame(index)
        previous = None
    return trusted


@contextlib.contextmanager
def _out_of_memory_is_an_input_error(job_plan: Plan, index: int) -> Iterator[None]:
    """GPU or host memory exhausted: one line naming the frame size and what to do."""
    try:
        yield
    except (tf.errors.ResourceExhaustedError, MemoryError):
        width, height = job_plan.size
        raise InputError(
            f"{job_plan.info.path}: out of memory stylizing frame {index} at {width}x{height}; "
            "use a smaller --size or --preset preview") from None


@dataclass(frozen=True)
class Previous:
    source: np.ndarray
    stylized: np.ndarray
    checksum: str | None  # of the stylized frame's PNG, recorded as the next frame's seed


def history_reach(temporal_frames: int) -> int:
    """How far back the temporal loss looks: distances 1, 2, 4, … for `temporal_frames` frames."""
    return 2 ** (temporal_frames - 1)


def _frames_with_history(
    job_plan: Plan, work: "WorkDir | ChunkFrames", first: int, last: int, earliest_seed: int, reach: int = 1
) -> Iterator[tuple[int, np.ndarray, list[Previous]]]:
    """Source frames from `first`, each with the finished frames just before it, nearest first
    (up to `reach` of them, none before `earliest_seed`, no gap). They are read back from disk,
    so a resumed chain starts from exactly what an uninterrupted one would have."""
    seed = first
    while seed > max(earliest_seed, first - reach) and work.has(seed - 1):
        seed -= 1
    frames = video.read_frames(job_plan.info, seed, last, job_plan.size)
    history: list[Previous] = []
    for index, source in zip(range(seed, last), frames):
        if index >= first:
            yield index, source, history
        finished = Previous(source, work.load(index), work.checksum(index)) if work.has(index) else None
        history = [finished, *history][:reach] if finished else []


def stylize_frame(job: Job, stylizer: Stylizer, source: np.ndarray, history: "list[Previous] | Previous | None",
                  notify) -> FrameResult:
    """One frame of the chain: cold (the first-frame budget from the content) when nothing comes
    before it or a scene cut separates it from what does; else warm from the frames before it,
    nearest first (`history`)."""
    settings = job.settings
    history = [history] if isinstance(history, Previous) else list(history or [])
    if not history:
        return _cold(settings, stylizer, source, notify, "cold")
    nearest = TemporalGuide(*flow.temporal_guide(history[0].source, source, history[0].stylized, settings.flow))
    coverage = float(nearest.reliability.mean())
    if is_scene_cut(coverage, settings.scene_cut):
        return _cold(settings, stylizer, source, notify, f"cold: scene cut ({coverage:.0%} of pixels follow the flow)")
    guide = long_term_guide([nearest, *_farther_guides(settings, source, history)])
    start = {"content": source, "previous": history[0].stylized}.get(settings.init, guide.warped)
    if settings.temporal_weight == 0:
        guide = None
    result = stylizer.stylize(source, start, settings.frame_iterations, guide, on_iterate=notify)
    return dataclasses.replace(result, start="warm")


def _cold(settings, stylizer: Stylizer, source: np.ndarray, notify, why: str) -> FrameResult:
    result = stylizer.stylize(source, source, settings.first_frame_iterations, on_iterate=notify)
    return dataclasses.replace(result, start=why)


def is_scene_cut(coverage: float, threshold: float) -> bool:
    """The flow from the frame before is reliable on too small a share of the pixels to carry
    anything across: a scene cut (or motion the flow cannot follow), so the frame starts cold."""
    return coverage < threshold


def _farther_guides(settings, source: np.ndarray, history: list[Previous]) -> list[TemporalGuide]:
    """Guides from the frames at distances 2, 4, … (Ruder et al.'s long-term loss), each warped
    straight onto this frame; a frame the flow cannot reach (a cut between) is left out."""
    guides = []
    for distance in (2 ** k for k in range(1, settings.temporal_frames)):
        if distance > len(history):
            break
        earlier = history[distance - 1]
        guide = TemporalGuide(*flow.temporal_guide(earlier.source, source, earlier.stylized, settings.flow))
        if not is_scene_cut(float(guide.reliability.mean()), settings.scene_cut):
            guides.append(guide)
    return guides


_weights_cache: dict[Path | None, VGGWeights] = {}


def vgg_weights(job: Job) -> VGGWeights:
    """The job's weights, loaded once per process."""
    if job.weights not in _weights_cache:
        _weights_cache[job.weights] = load_vgg16_weights(job.weights)
    return _weights_cache[job.weights]


def stylizer_for(job: Job, job_plan: Plan) -> Stylizer:
    blend = [StyleImage(images.load_rgb(style.path), style.weight, str(style.path)) for style in job.style]
    width, height = job_plan.size
    return Stylizer(job.settings, vgg_weights(job), blend, (height, width), colour_reference=colour_reference(job, job_plan))


def colour_reference(job: Job, job_plan: Plan) -> np.ndarray | None:
    """The frame whose colours keep_colors "histogram" gives the style images: the first of the
    render's range, never a chunk's own first frame, so every frame of a render, every farm task,
    Ray chunk and stitch gets the same style targets (deterministic, whichever runs where)."""
    if job.settings.keep_colors != "histogram":
        return None
    frames = video.read_frames(job_plan.info, job_plan.start, job_plan.start + 1, job_plan.size)
    try:
        return next(frames)
    finally:
        frames.close()


def assemble(job: Job, job_plan: Plan) -> Path:
    """Encode the finished frames of the range into the output (video or image sequence)."""
    work = WorkDir(job.workdir_path)
    _refuse_unfinished(work, job_plan)
    check_outputs(job, job_plan)  # again: a file may have appeared there during the render
    output = job.output_path
    stitch_missing(job, job_plan)  # borders of farm ranges whose stitch task has not run
    final = FinalFrames(work)
    if job.output_is_sequence:
        members = output_files(job, job_plan)
        for index, member in zip(range(job_plan.start, job_plan.end), members):
            with disk_full_is_an_input_error(output.parent, f"output frame {index}"):
                images.save_rgb(member, final.load(index))
        work.record_outputs(members)
        return output
    with disk_full_is_an_input_error(work.path, "the frames to encode"):
        frames = final.folder_for_encoding(job_plan.start, job_plan.end)
    # A render killed while encoding leaves video.encode_video's partial file behind.
    remove_stale(output.parent.glob(f".{output.stem}.partial-*{output.suffix}"), r"\.partial-(\d+)\.")
    try:
        with _pause_before_rename("encode", output.name):
            video.encode_video(
                _printf_escaped(frames) + "/%06d.png", job_plan.start, job_plan.end - job_plan.start, output,
                job_plan.info.fps, audio_from=job.video, audio_start_frame=job_plan.start,
                chroma=job.settings.video_chroma,
            )
    except RuntimeError as error:  # ffmpeg's own report; a full disk is the user's to fix
        if "No space left on device" not in str(error):
            raise
        raise InputError(f"{output.parent}: disk full while encoding {output.name}; the frames are kept in "
                         f"{work.path}; free space and run the same command again") from None
    work.record_outputs([output])
    return output


def _printf_escaped(folder: Path) -> str:
    """A folder for a printf-style frame pattern (ffmpeg's and ours): a % in its name is literal."""
    return str(folder).replace("%", "%%")


def _refuse_unfinished(work: WorkDir, job_plan: Plan) -> None:
    """Never encode a gap or a damaged frame: every frame of the range present and intact."""
    indices = range(job_plan.start, job_plan.end)
    absent = [i for i in indices if not work.has(i)]
    if absent:
        raise InputError(f"{work.path}: frames not rendered yet: {_ranges(absent)}")
    damaged = [i for i in indices if work.damage(i, job_plan.size)]  # stitched frames: stitch_border checks them
    if damaged:
        raise DamagedFrames(f"{work.path}: frames damaged since they were rendered: {_ranges(damaged)}; "
                            "rendering them again replaces them")


def _ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'"""
    spans, begin = [], indices[0]
    for previous, current in zip(indices, indices[1:] + [None]):
        if current != previous + 1:
            spans.append(f"{begin}-{previous}" if previous > begin else str(begin))
            begin = current
    return ", ".join(spans)


def manifest(job: Job, job_plan: Plan) -> dict:
    """What the frames in a work directory depend on, and where its files were."""
    weights = vgg_weights(job)
    return {
        # What the pixels depend on: a resume must match it exactly. Contents, not paths, so a
        # shot folder that moves (or a farm node mounting it elsewhere) keeps its frames.
        "identity": {
            "video": {"sha256": file_sha256(job.video)},
            "style": style_identity(job),
            "size": list(job_plan.size),
            "fps": str(job_plan.info.fps),
            "weights": {"sha256": weights.sha256},
            "settings": job.settings.frame_settings(),
        },
        # Where the files were last seen, for people reading the report.
        "files": {"video": str(job.video.resolve()), "style": str(job.style[0].path.resolve()),
                  **({"styles": [{"path": str(s.path.resolve()), "weight": s.weight} for s in job.style]}
                     if len(job.style) > 1 else {}),
                  "weights": weights.source},
    }


def style_identity(job: Job) -> dict:
    """One painting: its sha256 (as before blends existed, so earlier work directories resume);
    a blend: every painting's sha256 and weight, in order."""
    if len(job.style) == 1:
        return {"sha256": file_sha256(job.style[0].path)}
    return {"blend": [{"sha256": file_sha256(s.path), "weight": s.weight} for s in job.style]}


# ---------------------------------------------------------------- test hook
#
# NST_VIDEO_TEST_PAUSE=<point> makes the process print "test-pause: <point>" on stderr and sleep
# at that instant, so that tests/test_resume.py can SIGKILL it exactly there. Points:
#   optimize:N      during frame N's optimization (after its first iteration)
#   frame-write:N   frame N's PNG fully written under its temporary name, not yet renamed
#   encode          the output video encoded under its partial name, not yet renamed
# Unset (always, outside tests), it does nothing.

TEST_PAUSE_ENV = "NST_VIDEO_TEST_PAUSE"


def _test_pause(point: str) -> None:
    if os.environ.get(TEST_PAUSE_ENV) == point:
        print(f"test-pause: {point}", file=sys.stderr, flush=True)
        time.sleep(3600)


def _pausing_at(point: str, notify: ProgressCallback) -> ProgressCallback:
    def on_event(event) -> None:
        notify(event)
        if isinstance(event, Iterate):
            _test_pause(point)
    return on_event


@contextlib.contextmanager
def _pause_before_rename(point: str, name_ending: str) -> Iterator[None]:
    """Pause inside files.write_atomically / video.encode_video, after the temporary is
    complete and before os.replace puts it in place."""
    if os.environ.get(TEST_PAUSE_ENV) != point:
        yield
        return
    real_replace = os.replace

    def replace(source, destination, **kwargs):
        if str(destination).endswith(name_ending):
            _test_pause(point)
        return real_replace(source, destination, **kwargs)

    os.replace = replace
    try:
        yield
    finally:
        os.replace = real_replace
