"""The frame loop: one chunk of the clip stylized into the work directory, resumable at any frame.

`render_frames(job, chunk)` is the one unit of work: it skips frames already there (checking
them first) and resumes its warm-start chain from its last finished frame. A whole render (one
chunk), a farm task (`--frames`) and a Ray worker all make this same call. Each frame starts
cold (the first-frame budget from the content) or warm from the frames before it along the
optical flow, with Ruder et al.'s temporal loss (short- and long-term).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np
import tensorflow as tf

from . import detail, flow, images, video
from .chunks import Chunk
from .config import Job
from .errors import InputError, OutOfMemory
from .events import FrameDone, FrameRejected, ProgressCallback, Started, ignore
from .planning import Plan, plan
from .stylize import FrameResult, StyleImage, Stylizer, TemporalGuide, long_term_guide
from .weights import cached_vgg16_weights
from .workdir import ChunkFrames, WorkDir, disk_full_is_an_input_error


def render_frames(
    job: Job, chunk: Chunk, on_progress: ProgressCallback | None = None, job_plan: Plan | None = None,
    continue_chain: bool = False, stylizer: Stylizer | None = None, start_from: "StartFrom | None" = None,
) -> list[int]:
    """Stylize the chunk's frames (warm-up included) into the work directory; returns the
    indices it rendered. With `continue_chain` the chunk's first frame warm-starts from the
    finished frame before it (a local render resuming); without, it starts from the range's
    first frame rendered cold and carried to it (shared_start), so the result does not depend
    on what other workers have finished (farm and Ray chunks).
    `stylizer`: one made for the job already (side_by_side.py's, shared by several chains);
    `start_from`: what gives that start (shared_start, or side_by_side's one for all chains)."""
    job_plan = job_plan or plan(job)
    work = ChunkFrames(WorkDir(job.workdir_path), chunk)
    notify = on_progress or ignore
    indices = range(chunk.begin, chunk.last)
    earliest_seed = job_plan.start if continue_chain else chunk.begin
    trusted = _check_finished(work, indices, job_plan.size, notify)
    first = next((i for i in indices if i not in trusted), None)
    notify(Started(len(indices), len(trusted), *_budget(job.settings, indices, trusted, first, earliest_seed)))
    if first is None:
        return []
    with _out_of_memory_is_an_input_error(job, job_plan, first):
        stylizer = stylizer or stylizer_for(job, job_plan)
    rendered = []
    reach = history_reach(job.settings.temporal_frames)
    for index, source, history in _frames_with_history(job_plan, work, first, chunk.last, earliest_seed, reach):
        previous = history[0] if history else None
        seed = previous.checksum if previous else None
        if work.has(index) and work.continues(index, seed):
            continue
        if work.has(index):
            notify(FrameRejected(index, f"it continued frame {index - 1} as it was before that was rendered again"))
        with _out_of_memory_is_an_input_error(job, job_plan, index):
            if not history and index > job_plan.start and job.settings.init != "cold":
                history = [(start_from or shared_start)(job_plan, stylizer, notify)]
            result = stylize_frame(job, stylizer, source, history, notify)
        with disk_full_is_an_input_error(work.path, f"frame {index}"):
            work.save(index, result, seed)
        rendered.append(index)
        notify(FrameDone(index, result))
    return rendered


StartFrom = Callable[[Plan, Stylizer, ProgressCallback], "Previous"]


def shared_start(job_plan: Plan, stylizer: Stylizer, notify: ProgressCallback) -> Previous:
    """What a chunk's chain starts from when it does not begin the range: the range's first frame
    rendered cold, as the first chunk renders it, to be carried along the flow onto the chunk's
    first frame. Started cold there, two chunks' chains placed their strokes differently over the
    same frames (two local optima), and the stitch of their border had to cross from one layout
    to the other; on a still shot that crossing was the largest change between frames. Where the
    flow from the range's first frame does not reach (a scene cut between, or too much motion),
    the chunk starts cold as before (stylize_frame's scene-cut test)."""
    source = first_source_frame(job_plan)
    return Previous(source, stylizer.stylize_cold(source, on_iterate=notify).image, None)


def _budget(settings, indices: range, trusted: set[int], first: int | None, earliest_seed: int) -> tuple[int, int]:
    """Evaluations budgeted for the frames left to render, and for one warm frame. The first of
    them starts cold when nothing before it can seed it (scene cuts show only as they happen)."""
    left = [i for i in indices if i not in trusted]
    cold = settings.first_frame_iterations + settings.coarse_levels * settings.coarse_iterations
    starts_cold = first is not None and (first == earliest_seed or settings.init == "cold")
    every = cold if settings.init == "cold" else settings.frame_iterations
    return (cold - every if starts_cold else 0) + every * len(left), every


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
def _out_of_memory_is_an_input_error(job: Job, job_plan: Plan, index: int) -> Iterator[None]:
    """GPU or host memory exhausted: one line naming the frame size and the largest that fits."""
    try:
        yield
        return
    except (tf.errors.ResourceExhaustedError, MemoryError):
        pass  # measured below, once the error and the tensors its traceback holds are gone
    width, height = job_plan.size
    fits = largest_size_that_fits(job, job_plan)
    advice = f"--size {fits} fits" if fits else f"not even --size {SMALLEST_SIZE_TRIED} fits"
    raise OutOfMemory(f"{job_plan.info.path}: out of memory stylizing frame {index} at {width}x{height}; {advice}")


SMALLEST_SIZE_TRIED = 64


def largest_size_that_fits(job: Job, job_plan: Plan) -> int | None:
    """The largest long side, in steps of a quarter down from the render's, at which the frame's
    stylizer is made, with its device optimizer's buffers, and its loss and gradient evaluated once:
    the peak of a frame's memory. None when not even SMALLEST_SIZE_TRIED fits."""
    size = max(job_plan.size)
    while (size := int(size * 0.75) // 16 * 16) >= SMALLEST_SIZE_TRIED:
        try:
            smaller = dataclasses.replace(job_plan, size=video.output_size(job_plan.info, size))
        except InputError:  # a side below VGG16's minimum
            return None
        stylizer = None  # the last try's, freed before the next is made
        try:
            stylizer = stylizer_for(job, smaller)
            if stylizer.optimizes_on_device:
                _ = stylizer.device_optimizer  # its buffers (L-BFGS: 85 images) stay through a frame
            stylizer.evaluate(np.zeros(stylizer.shape, np.float32))
            return size
        except (tf.errors.ResourceExhaustedError, MemoryError):
            continue
    return None


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
    if not history or settings.init == "cold":
        return _cold(settings, stylizer, source, notify, "cold")
    flows = flow.flows_between(history[0].source, source, settings.flow)
    nearest = TemporalGuide(*flow.temporal_guide(history[0].source, source, history[0].stylized, settings.flow, flows))
    coverage = float(nearest.reliability.mean())
    if is_scene_cut(coverage, settings.scene_cut):
        return _cold(settings, stylizer, source, notify, f"cold: scene cut ({coverage:.0%} of pixels follow the flow)")
    guide = long_term_guide([nearest, *_farther_guides(settings, source, history)])
    start = {"content": source, "previous": history[0].stylized}.get(settings.init)
    if start is None:  # previous-warped
        unseen = flow.entering_view(flows[0]) & (guide.reliability == 0)  # nor held by a farther frame
        start = _carried_start(guide.warped, source, unseen)
    if settings.temporal_weight == 0:
        guide = None
    result = stylizer.stylize(source, start, settings.frame_iterations, guide, on_iterate=notify)
    return dataclasses.replace(result, start="warm")


def _carried_start(warped: np.ndarray, source: np.ndarray, entering: np.ndarray) -> np.ndarray:
    """The previous frames carried onto this one, except where the view moved onto what no earlier
    frame showed: there the source, in the colours of the stylized pixels beside it.
    Started from the border pixels the warp smears in there, a pan or a zoom out left streaks that
    20 evaluations never repainted and every later frame carried on; started from the plain
    source, it left a pale band with a hard edge, which a zoom out then carried inwards. Drift of
    the 200-frame pan and zoom: 0.868, 0.933, now 1.004 (benchmarks/RESULTS.md)."""
    start = warped.astype(np.float32)
    if entering.any():
        start[entering] = _in_neighbours_colours(source.astype(np.float32), start, ~entering)[entering]
    return start


def _in_neighbours_colours(source: np.ndarray, painted: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`source` with its local mean colour replaced by that of the `known` pixels of `painted` near
    it: its detail (what the content loss holds) with no edge of colour or brightness where it
    meets them. The replacement fades out about two blur widths from the known pixels."""
    sigma = max(source.shape[:2]) / 16

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), sigma)

    weight = blur(known.astype(np.float32))
    nearby = blur(painted * known[..., None]) / np.maximum(weight, 1e-6)[..., None]
    reach = np.clip(4 * weight, 0, 1)[..., None]  # 1 to 2/3 of sigma from the known pixels, 0.1 at 2 sigma
    own_broad, _ = detail.split(source, sigma)
    return np.clip(source + reach * (nearby - own_broad), 0, 255)


def _cold(settings, stylizer: Stylizer, source: np.ndarray, notify, why: str) -> FrameResult:
    result = stylizer.stylize_cold(source, on_iterate=notify)
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


def stylizer_for(job: Job, job_plan: Plan) -> Stylizer:
    blend = [StyleImage(images.load_rgb(style.path), style.weight, str(style.path)) for style in job.style]
    width, height = job_plan.size
    return Stylizer(job.settings, cached_vgg16_weights(job.weights), blend, (height, width), colour_reference=colour_reference(job, job_plan))


def colour_reference(job: Job, job_plan: Plan) -> np.ndarray | None:
    """The frame whose colours keep_colors "histogram" gives the style images: the first of the
    render's range, never a chunk's own first frame, so every frame of a render, every farm task,
    Ray chunk and stitch gets the same style targets (deterministic, whichever runs where)."""
    if job.settings.keep_colors != "histogram":
        return None
    return first_source_frame(job_plan)


def first_source_frame(job_plan: Plan) -> np.ndarray:
    """The source frame that begins the render's range, at the render's size."""
    frames = video.read_frames(job_plan.info, job_plan.start, job_plan.start + 1, job_plan.size)
    try:
        return next(frames)
    finally:
        frames.close()
