"""`chains = N`: a clip's range as N chunks rendered side by side on this machine's one device.

Each chunk is the farm's unit of work (chain.render_frames: its warm-up, its own frames, resumable
at any frame), in a thread of its own; their evaluations are batched (batch.py). The borders are
then stitched as a farm's are, when the video is assembled. On a GPU one batched evaluation of N
frames costs far less than N single ones; on a CPU it costs about the same, so there `chains`
only adds the chunks' warm-ups and stitches.
"""
from __future__ import annotations

import math
import threading

from .batch import BatchedEvaluations, Stopped
from .chain import Previous, render_frames, shared_start, stylizer_for
from .chunks import Chunk, plan_chunks
from .config import Job
from .events import FrameDone, FrameRejected, Progressed, ProgressCallback, Started, ignore
from .planning import Plan
from .workdir import ChunkFrames, WorkDir

JOIN_SECONDS = 0.5  # the main thread wakes this often, so Ctrl-C stops the render at once


def side_by_side_chunks(job_plan: Plan, chains: int, overlap: int) -> list[Chunk]:
    """At most `chains` chunks of equal length over the range, each but the first with its warm-up."""
    length = job_plan.end - job_plan.start
    return plan_chunks(job_plan.start, job_plan.end, max(1, math.ceil(length / chains)), overlap)


def render_side_by_side(job: Job, job_plan: Plan, on_progress: ProgressCallback | None = None) -> None:
    """Render the range's chunks at once, one thread each, their evaluations batched; the first
    error of any chunk is raised once every thread has ended (the others finish their chunks)."""
    chunks = side_by_side_chunks(job_plan, job.settings.chains, job.settings.warmup_frames)
    batch = BatchedEvaluations(stylizer_for(job, job_plan), len(chunks))
    progress = _FinishedFrames(WorkDir(job.workdir_path), chunks, on_progress or ignore)
    start_from = _OneSharedStart()
    errors: list[BaseException] = []

    def render(slot: int, chunk: Chunk) -> None:
        try:
            render_frames(job, chunk, progress, job_plan, stylizer=batch.chain(slot), start_from=start_from)
        except Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            errors.append(error)

    threads = [threading.Thread(target=render, args=(slot, chunk), daemon=True, name=f"chain {slot}")
               for slot, chunk in enumerate(chunks)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(JOIN_SECONDS)
    finally:
        batch.stop()  # on Ctrl-C: chains waiting for a batch end; the frames they saved stay
    if errors:
        raise errors[0]


class _OneSharedStart:
    """chain.shared_start rendered by the first chain that needs it and handed to the others: the
    range's first frame cold is the same for every chunk, so N chains need not render it N - 1 times."""

    def __init__(self):
        self.lock, self.previous = threading.Lock(), None

    def __call__(self, job_plan: Plan, stylizer, notify) -> Previous:
        with self.lock:  # the others wait here, outside any batch, so no batch waits for them
            if self.previous is None:
                self.previous = shared_start(job_plan, stylizer, notify)
            return self.previous


class _FinishedFrames:
    """The chains' progress as one: frames finished on disk of all chunks (warm-ups included),
    as a Ray driver reports it; each chain's own Started and per-iteration events are not passed on."""

    def __init__(self, work: WorkDir, chunks: list[Chunk], notify: ProgressCallback):
        self.notify, self.lock = notify, threading.Lock()
        frames = [(ChunkFrames(work, chunk), index) for chunk in chunks for index in range(chunk.begin, chunk.last)]
        self.total, self.done = len(frames), sum(holder.has(index) for holder, index in frames)
        notify(Started(self.total, self.done))

    def __call__(self, event) -> None:
        with self.lock:
            if isinstance(event, FrameDone):
                self.done = min(self.done + 1, self.total)  # a damaged frame found finished is rendered again
                self.notify(Progressed(self.done))
            elif isinstance(event, FrameRejected):
                self.notify(event)
