"""Joining two chunks' chains at their border in optimization, not in pixels.

Chunks render in parallel, each its own warm-start chain, so at a border two chains meet whose
strokes lie in different places. Each chunk after the first starts `overlap` frames early (its
warm-up), so both chains cover the frames before the border. A pixel cross-fade of the two is a
double exposure: both sets of strokes at part contrast. Instead, once both chunks are finished,
the stitch renders those frames once more as a third chain:

- it continues the earlier chain: its first frame follows the earlier chunk's last own frame
  before the stitch, each later one the previous stitched frame, warped along the flow;
- each stitched frame has two temporal targets: the previous stitched frame warped forward
  (consistency with where it came from) and the later chain's next frame warped backward (where
  it must arrive). How hard each pulls is set frame by frame so that the stitched frames cross
  from the earlier chain to the later in equal steps: the previous stitched frame's progress is
  measured against both chains' frames at its index (`progress`), and the pull toward the later
  chain is the share of what is left that lands this frame on its step (Border.pull). So the
  last stitched frame leads into the later chunk's first own frame as one chain's frames lead
  into each other.

The two chains differ by some D (mean squared difference of their frames over the overlap); E_warp
sums squared steps, so crossing in n + 1 equal steps adds about D/(n+1)² to each seam pair, and
no path from one chain to the other has a smaller sum of squared steps (D/(n+1) over the n + 1
pairs). Once the steps are equal, a longer overlap (or chains that differ less) is what brings
the seam pairs down (measured: benchmarks/RESULTS.md, "Chunk borders: the stitch in measured steps").
Chains now differ less: every chunk's chain starts from the range's first frame carried to it
(chain.shared_start), which cut D on a still shot sixfold.

Its target keeps the two chains' detail at full contrast (pulled_between), and every stitched
frame is optimized with the style and content losses too, so it keeps the contrast of a
stylized frame where a cross-fade loses a fifth to a third of it. Stitched frames replace the earlier
chunk's frames in the output (see workdir.FinalFrames). A stitch is a unit of work like a chunk:
idempotent, resumable frame by frame, refused while a frame it needs is missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import detail, flow, video
from .config import Job
from .errors import InputError
from .chain import stylizer_for
from .events import Iterate
from .planning import holding, plan
from .stylize import FrameResult, Stylizer, TemporalGuide
from .workdir import WorkDir, disk_full_is_an_input_error, stitch_dir


# Part of every stitched frame's seed: frames stitched by an earlier method are stitched again.
STITCH_METHOD = "measured-steps, kept detail, no smear"
# The detail a stitch target keeps at full contrast: what a blur of 1/DETAIL_SCALE of the frame's
# long side removes (2 px at 128 px: the strokes' scale, which follows the frame's size).
DETAIL_SCALE = 64.0
MAX_DETAIL_GAIN = 2.0  # a bound where both warps are nearly flat and the ratio means little


@dataclass(frozen=True)
class Border:
    """The border before frame `first` (the later chunk's first own frame); frames
    [begin, first) are re-rendered by its stitch."""

    first: int
    begin: int

    @property
    def frames(self) -> range:
        return range(self.begin, self.first)

    def pull(self, index: int, reached: float) -> float:
        """How strongly stitched frame `index` is pulled toward the later chain (the rest pulls
        toward the previous stitched frame), that frame being `reached` of the way over: the
        share of what is left that lands this one at progress(index).

        The pull compounds: frame k lands at p_k = (1 - w_k) p_(k-1) + w_k, so equal steps
        p_k = k/(n+1) need w_k = (p_k - p_(k-1)) / (1 - p_(k-1)), which is 1/(n+2-k) when every
        frame lands where it is meant to. The optimizer lands each a little short (0.01-0.03 on
        the cradle GIF), and a fixed 1/(n+2-k) leaves that lag to the last pairs; measuring it
        lets the next frame make it up. (A linear w_k = k/(n+1) front-loads the change: p = 0.14,
        0.39, 0.65, 0.85, 0.96, 0.99 for n = 6, and E_warp, a sum of squared steps, is least for
        equal steps.)"""
        if reached >= 1.0:
            return 1.0
        return float(np.clip((self.progress(index) - reached) / (1.0 - reached), 0.0, 1.0))

    def progress(self, index: int) -> float:
        """How far stitched frame `index` is meant to be from the earlier chain to the later:
        k/(n+1), equal steps from the frame before the stitch to the later chunk's first own frame."""
        return (index - self.begin + 1) / (len(self.frames) + 1)

    def __str__(self) -> str:
        return f"the border at frame {self.first}"


def border_between(earlier_first: int, first: int, overlap: int) -> Border:
    """The border between the chunks starting at `earlier_first` and `first`. The stitch covers
    the later chunk's warm-up, but only frames the earlier chunk owns after its own first frame:
    the stitch starts from a frame of the earlier chain, and frames before the earlier chunk's
    first belong to the border before it, which has a stitch of its own."""
    return Border(first, max(first - overlap, earlier_first + 1))


def border_at(work: WorkDir, start: int, first: int, overlap: int) -> Border:
    """The border before the chunk starting at `first`, the chunk before it found by its warm-up
    folder (farm ranges are not planned ahead; the clip's range starts at `start`). Nothing to
    stitch where the later chain repeats the earlier one over the border (repeats_earlier_chain)."""
    earlier_first = max((s for s in work.warmup_starts() if s < first), default=start)
    border = border_between(max(earlier_first, start), first, overlap)
    if first - overlap <= start and repeats_earlier_chain(work, border):
        return Border(first, first)
    return border


def repeats_earlier_chain(work: WorkDir, border: Border) -> bool:
    """Whether the later chunk's warm-up frames over the border are the earlier chain's, byte for
    byte. A warm-up that begins at the range's first frame renders the first chunk's chain again:
    rendered alone (a farm or Ray task) it is the same, frame for frame, and there is nothing to
    cross. Rendered beside it (`chains`), float rounding differs between the two chains
    and their cold first frames end apart (8.8-10.9 levels mean on the cradle GIF at 128 px), so
    there the border is stitched like any other."""
    later = work.warmup(border.first)
    return all(work.has(i) and later.has(i) and work.checksum(i) == later.checksum(i) for i in border.frames)


def borders(work: WorkDir, start: int, end: int, overlap: int) -> list[Border]:
    """The borders of chunks rendered so far into `work` within frames [start, end)."""
    found = [border_at(work, start, first, overlap) for first in work.warmup_starts() if start < first < end]
    return [border for border in found if border.frames]


# ---------------------------------------------------------------- inputs of a stitch


def needed_frames(work: WorkDir, border: Border) -> list[tuple[WorkDir, int]]:
    """The frames a stitch reads: the earlier chain's from the frame before it (the stitched
    frames' progress is measured against them), the later chain's warm-up over it, and the later
    chunk's first own frame."""
    later = work.warmup(border.first)
    return [*((work, i) for i in range(border.begin - 1, border.first + 1)), *((later, i) for i in border.frames)]


def refuse_unless_ready(work: WorkDir, border: Border) -> None:
    absent = [(holder is work, index) for holder, index in needed_frames(work, border) if not holder.has(index)]
    own = [str(index) for is_own, index in absent if is_own]
    warmup = [str(index) for is_own, index in absent if not is_own]
    parts = ([f"frame(s) {', '.join(own)}"] if own else []) + (
        [f"warm-up frame(s) {', '.join(warmup)} of the range starting at {border.first}"] if warmup else [])
    if parts:
        raise InputError(f"{work.path}: cannot stitch {border} yet: {' and '.join(parts)} not rendered; "
                         f"render the frames on both sides of frame {border.first} first")


def later_chain(work: WorkDir, border: Border, index: int) -> WorkDir:
    """Where the later chain's frame `index` is: its warm-up, or its own frames from `first` on."""
    return work if index >= border.first else work.warmup(border.first)


def seed_of(work: WorkDir, border: Border, previous: WorkDir, index: int) -> str:
    """What stitched frame `index` depends on, as one checksum: the frame before it (stitched,
    or the earlier chain's), the later chain's frame after it and, past the first, both chains'
    frames the previous one's progress is measured against. A frame on disk is reused only if
    all are still what it was made from, by the same method (STITCH_METHOD)."""
    parts = [STITCH_METHOD, previous.checksum(index - 1), later_chain(work, border, index + 1).checksum(index + 1)]
    if index > border.begin:
        parts += [work.checksum(index - 1), later_chain(work, border, index - 1).checksum(index - 1)]
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()


# ---------------------------------------------------------------- the stitch itself


def stitch_border(job: Job, first: int, on_iterate: Callable[[Iterate], None] | None = None,
                  job_plan=None) -> list[int]:
    """Stitch the border before frame `first` into the work directory; returns the frames it
    rendered (none when the stitch is already on disk). InputError while a neighbour is missing."""
    job_plan = job_plan or plan(job)
    work = WorkDir(job.workdir_path)
    if not job_plan.start < first < job_plan.end:
        raise InputError(f"{work.path}: no chunk border at frame {first}; borders lie inside the clip's frames "
                         f"{job_plan.start + 1}-{job_plan.end - 1}")
    border = border_at(work, job_plan.start, first, job.settings.warmup_frames)
    if not border.frames:
        return []
    refuse_unless_ready(work, border)
    out = stitch_dir(work, first)
    for folder in (out.path / "frames", out.path / "stats"):
        folder.mkdir(parents=True, exist_ok=True)
    out.remove_stale_temporaries()
    return _render_stitch(job, job_plan, work, border, out, on_iterate)


def _render_stitch(job: Job, job_plan, work: WorkDir, border: Border, out: WorkDir, on_iterate) -> list[int]:
    sources = dict(zip(range(border.begin - 1, border.first + 1),
                       video.read_frames(job_plan.info, border.begin - 1, border.first + 1, job_plan.size)))
    stylizer, rendered = None, []
    for index in border.frames:
        previous = out if index > border.begin else work
        seed = seed_of(work, border, previous, index)
        if out.has(index) and out.damage(index, job_plan.size) is None and out.continues(index, seed):
            continue
        stylizer = stylizer or stylizer_for(job, job_plan)
        before = previous.load(index - 1)
        result = stitch_frame(job, stylizer, border, index, sources, before, reached(work, border, index - 1, before),
                              later_chain(work, border, index + 1).load(index + 1), on_iterate)
        with disk_full_is_an_input_error(out.path, f"stitched frame {index}"):
            out.save(index, result, seed)
        rendered.append(index)
    return rendered


def reached(work: WorkDir, border: Border, index: int, frame: np.ndarray) -> float:
    """How far `frame`, the output's frame `index`, has crossed from the earlier chain to the later:
    0 before the stitch (it is the earlier chain's), else measured against both chains' frames."""
    if index < border.begin:
        return 0.0
    return progress(frame, work.load(index), later_chain(work, border, index).load(index))


def progress(frame: np.ndarray, earlier: np.ndarray, later: np.ndarray) -> float:
    """Where `frame` lies from `earlier` (0) to `later` (1): its projection onto their difference."""
    start = earlier.astype(np.float64).ravel()
    difference = later.astype(np.float64).ravel() - start
    return float(difference @ (frame.astype(np.float64).ravel() - start) / max(difference @ difference, 1e-12))


def stitch_frame(job: Job, stylizer: Stylizer, border: Border, index: int, sources: dict[int, np.ndarray],
                 before: np.ndarray, reached_before: float, after: np.ndarray, on_iterate=None) -> FrameResult:
    """Stitched frame `index` from the stylized frame before it (`reached_before` of the way
    over) and the later chain's frame after it.

    It starts from its temporal target, the pull-weighted mean of the two warps: started from
    the forward warp alone, a per-frame budget cannot follow the steps, the stitch lags behind
    and the jump reappears at its last pair. The mean is not weighted by the flows' reliability:
    that would switch a pixel wholly to the later chain wherever the forward flow is unreliable
    (a few % of a still clip's pixels, other ones on every frame), so those pixels would cross in
    one step instead of n + 1 (cradle GIF, DeepFlow: worst seam pair 7.6× the others' mean, 4.4×
    pull-weighted; benchmarks/RESULTS.md). Each warp still pulls only where its flow is reliable.
    The style loss then restores the contrast that a mean of two chains lacks."""
    method, toward_later = job.settings.flow, border.pull(index, reached_before)
    forward_flows = flow.flows_between(sources[index - 1], sources[index], method)
    backward_flows = flow.flows_between(sources[index + 1], sources[index], method)
    forward = TemporalGuide(*flow.temporal_guide(sources[index - 1], sources[index], before, method, forward_flows),
                            1.0 - toward_later)
    backward = TemporalGuide(*flow.temporal_guide(sources[index + 1], sources[index], after, method, backward_flows),
                             toward_later)
    forward, backward = each_where_the_other_saw(forward, backward, flow.entering_view(forward_flows[0]),
                                                 flow.entering_view(backward_flows[0]))
    guide = pulled_between(forward, backward)
    return stylizer.stylize(sources[index], guide.warped, job.settings.frame_iterations, guide, on_iterate=on_iterate)


def each_where_the_other_saw(forward: TemporalGuide, backward: TemporalGuide, forward_outside: np.ndarray,
                             backward_outside: np.ndarray) -> tuple[TemporalGuide, TemporalGuide]:
    """Where a warp sampled outside its frame (the view had not yet reached, or had left, what
    this frame shows) it holds only the border's pixels smeared across; there it takes the other
    warp's pixels, where the other frame saw them. In a pan, the mean of the two warps was
    otherwise streaked in the strip that enters, and the stitched frame started from the streaks
    and was pulled toward them."""
    take_backward = (forward_outside & ~backward_outside)[..., None]
    take_forward = (backward_outside & ~forward_outside)[..., None]
    return (dataclasses.replace(forward, warped=np.where(take_backward, backward.warped, forward.warped)),
            dataclasses.replace(backward, warped=np.where(take_forward, forward.warped, backward.warped)))


def pulled_between(forward: TemporalGuide, backward: TemporalGuide) -> TemporalGuide:
    """One guide toward the weight-weighted mean of two warps, pulling as hard as both together
    where each is reliable.

    Where the two chains' strokes lie in different places, their mean is a double exposure: each
    set of strokes at part contrast (at half and half, half the detail energy). So the mean's
    detail is scaled back, window by window, to the weighted energy of the two warps' details: a
    variance-preserving blend (Heitz & Neyret, "High-performance by-example noise using a
    histogram-preserving blending operator", 2018). Where the details agree the gain is 1; it is
    never above MAX_DETAIL_GAIN. The broad colours stay the plain mean. Measured at the default
    preset (DeepFlow): texture energy of the stitched frames 0.88 → 0.93 of their neighbours' on
    the cradle GIF, for seam pairs 1.60 → 1.70 of the others'; on the sample 1.14 → 1.16
    (benchmarks/RESULTS.md, "stitch targets that keep the chains' detail")."""
    sigma = max(forward.warped.shape[:2]) / DETAIL_SCALE
    mean = forward.weight * forward.warped.astype(np.float32) + backward.weight * backward.warped.astype(np.float32)
    wanted = (forward.weight * detail.energy(forward.warped, sigma, 2 * sigma)
              + backward.weight * detail.energy(backward.warped, sigma, 2 * sigma))
    target = detail.with_energy(mean, wanted, sigma, 2 * sigma, MAX_DETAIL_GAIN)
    pull = forward.weight * forward.reliability + backward.weight * backward.reliability
    return TemporalGuide(target, pull.astype(np.float32))


def stitch_task(job: Job, first: int, on_iterate: Callable[[Iterate], None] | None = None) -> list[int]:
    """The farm task `--stitch FIRST`: beside --frames tasks (a shared hold on the work directory),
    idempotent, so a farm manager may retry it."""
    with holding(job, shared=True) as (job, job_plan):  # FIRST is the source's frame number, like --frames
        number = job_plan.info.first_number
        return [index + number for index in stitch_border(job, first - number, on_iterate, job_plan)]


def stitch_missing(job: Job, job_plan) -> list[int]:
    """Every stitch not on disk, or made from frames rendered again since (a farm that ran only
    --frames tasks before --assemble); returns the frames rendered."""
    work = WorkDir(job.workdir_path)
    rendered = []
    for border in borders(work, job_plan.start, job_plan.end, job.settings.warmup_frames):
        rendered += stitch_border(job, border.first, job_plan=job_plan)
    return rendered
