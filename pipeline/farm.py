"""Render one clip's chunks as Ray tasks, on one machine or a cluster.

Ray schedules, retries and places the tasks; each task is `chain.render_frames` on one chunk,
or `stitch.stitch_border` on one border once the chunks on both sides are done, given file
paths (the job) and never pixels. The driver only counts finished frames on disk
for the progress bar, then assembles the video exactly as a local render does. Only imported
when Ray is asked for, so the single-machine path never loads it.
"""
from __future__ import annotations

from pathlib import Path

import ray

from . import chain
from .events import ProgressCallback, Progressed, Started, ignore
from .planning import holding, with_recorded_optimizer
from .render import assemble
from .chunks import Chunk, plan_chunks
from .config import Job
from .errors import ChunkFailed
from .stitch import Border, border_between, stitch_border
from .workdir import ChunkFrames, WorkDir, stitch_dir

# Tasks whose worker process dies (a crash, a lost node) are run again this many times; an
# exception in our own code is not retried: it would fail the same way again.
MAX_RETRIES = 3
POLL_SECONDS = 2.0


def connect(address: str) -> None:
    """`local` starts a cluster on this machine; anything else joins one ('auto', 'ray://…')."""
    if ray.is_initialized():
        return
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    ray.init(address=None if address == "local" else address, **options)


def render_on_ray(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    connect(job.settings.ray)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # A render begun with another optimizer under "auto" goes on with it; following it here, not
    # only under the hold, keeps holding's note for tasks started together from this resume.
    job = with_recorded_optimizer(job, restart)
    with holding(job, restart) as (job, job_plan):  # the workers write under the driver's lock
        settings = job.settings
        chunks = plan_chunks(job_plan.start, job_plan.end, settings.chunk_size, settings.warmup_frames)
        failures = _run(job, chunks, gpus, on_progress or ignore)
        if failures:
            raise ChunkFailed("; ".join(f"{unit}: {error}" for unit, error in failures))
        return assemble(job, job_plan)


def plan_borders(chunks: list[Chunk], overlap: int) -> dict[Border, tuple[Chunk, Chunk]]:
    """Each border with a stitch, and the two chunks it joins (its stitch waits for both; a stitch
    whose later chain turns out to repeat the earlier one has nothing to do, stitch.border_at)."""
    found = {border_between(earlier.first, later.first, overlap): (earlier, later)
             for earlier, later in zip(chunks, chunks[1:])}
    return {border: pair for border, pair in found.items() if border.frames}


def _run(job: Job, chunks: list[Chunk], gpus: int, notify) -> list[tuple[Chunk | Border, str]]:
    """Every chunk at once; each border's stitch as soon as the two chunks beside it are done,
    so no chunk waits for another. Reports frames finished on disk; returns the failures."""
    work = WorkDir(job.workdir_path)
    waiting = plan_borders(chunks, job.settings.warmup_frames)
    borders = list(waiting)
    pending = {render_chunk.options(num_gpus=gpus).remote(job, chunk): chunk for chunk in chunks}
    done: set[Chunk] = set()
    total = sum(chunk.last - chunk.begin for chunk in chunks) + sum(len(border.frames) for border in borders)
    notify(Started(total, _finished(work, chunks, borders)))
    failures = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
        for ref in ready:
            unit = pending.pop(ref)
            try:
                ray.get(ref)
            except Exception as error:  # noqa: BLE001 - one unit's failure is reported, the others go on
                failures.append((unit, _first_line(error)))
                continue
            done.add(unit)
            for border in [b for b, pair in waiting.items() if set(pair) <= done]:
                del waiting[border]
                pending[stitch_chunks.options(num_gpus=gpus).remote(job, border.first)] = border
        notify(Progressed(_finished(work, chunks, borders)))
    return failures


def _finished(work: WorkDir, chunks: list[Chunk], borders: list[Border]) -> int:
    in_chunks = sum(ChunkFrames(work, c).has(i) for c in chunks for i in range(c.begin, c.last))
    return in_chunks + sum(stitch_dir(work, b.first).has(i) for b in borders for i in b.frames)


def _first_line(error: Exception) -> str:
    cause = getattr(error, "cause", None) or error  # Ray wraps task errors; the user wants ours
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


@ray.remote(max_retries=MAX_RETRIES, num_cpus=1)
def render_chunk(job: Job, chunk: Chunk) -> int:
    """One chunk in a Ray worker; returns how many frames it rendered (0 when already done)."""
    _configure_tensorflow()
    return len(chain.render_frames(job, chunk))


@ray.remote(max_retries=MAX_RETRIES, num_cpus=1)
def stitch_chunks(job: Job, first: int) -> int:
    """The stitch of the border at frame `first` in a Ray worker; returns how many frames it rendered."""
    _configure_tensorflow()
    return len(stitch_border(job, first))


def _configure_tensorflow() -> None:
    """Once per worker process, before TensorFlow first runs (it refuses these settings after):
    take GPU memory as needed (several workers may share a card), and use only the CPU cores
    Ray gave the task."""
    global _tensorflow_configured
    if _tensorflow_configured:
        return
    import tensorflow as tf

    from .devices import take_gpu_memory_as_needed

    take_gpu_memory_as_needed()
    cores = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _tensorflow_configured = True


_tensorflow_configured = False
