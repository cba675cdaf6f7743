"""The three ways to render a job: the whole clip here (`render`: one chain, or with `chains`
several side by side), one farm range (`render_range`), and the encoding of finished frames
(`assemble_only`).

The frame loop is chain.py, the work directory workdir.py, the stitch of chunk borders
stitch.py; Ray is farm.py, which calls this module (never the other way round). The report is
written by whoever asked for the render.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from . import images, sequences, timecode, video
from .chain import render_frames
from .chunks import Chunk, chunk_for_range
from .config import Job
from .errors import InputError
from .events import ProgressCallback
from .outputs import number_ranges
from .planning import Plan, check_outputs, holding, output_files
from .side_by_side import render_side_by_side
from .stitch import stitch_missing
from .workdir import DamagedFrames, FinalFrames, WorkDir, disk_full_is_an_input_error, remove_stale


def render(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    """Render the job's whole range, resuming what is already done, and encode the output."""
    with holding(job, restart) as (job, job_plan):
        if job.settings.chains > 1:
            render_side_by_side(job, job_plan, on_progress)
        else:
            render_frames(job, Chunk(job_plan.start, job_plan.end), on_progress, job_plan, continue_chain=True)
        return assemble(job, job_plan)


def render_range(job: Job, first: int, last: int, on_progress: ProgressCallback | None = None) -> Plan:
    """A farm task: frames [first, last) as their own chunk (warm-up and all), no encoding.
    Deterministic and idempotent, so a farm manager may retry it or run ranges side by side."""
    with holding(job, shared=True) as (job, job_plan):
        number = job_plan.info.first_number  # farm ranges speak the source's frame numbers
        if not job_plan.start <= first - number < last - number <= job_plan.end:
            raise InputError(f"{job.video}: frames {first}-{last - 1} lie outside the clip's frames "
                             f"{job_plan.start + number}-{job_plan.end - 1 + number}")
        render_frames(job, chunk_for_range(job_plan.start, first - number, last - number, job.settings.warmup_frames),
                      on_progress, job_plan)
        return job_plan


def assemble_only(job: Job) -> Path:
    """Encode the output from frames rendered earlier (farm ranges); refuses while any is missing."""
    with holding(job) as (job, job_plan):
        return assemble(job, job_plan)


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
            with disk_full_is_an_input_error(output.parent, f"output frame {member.name}"):
                _save_output_frame(member, final.load16(index), job.bit_depth)
        work.record_outputs(members)
        return output
    with disk_full_is_an_input_error(work.path, "the frames to encode"):
        frames = final.folder_for_encoding(job_plan.start, job_plan.end)
    # A render killed while encoding leaves video.encode_video's partial file behind.
    remove_stale(output.parent.glob(f".{output.stem}.partial-*{output.suffix}"), r"\.partial-(\d+)\.")
    with disk_full_is_an_input_error(output.parent, f"{output.name} (the frames are kept in {work.path})"):
        video.encode_video(
            _printf_escaped(frames) + "/%06d.png", job_plan.start, job_plan.end - job_plan.start, output,
            job_plan.info.fps, audio_from=job.video if job_plan.info.has_audio else None,
            audio_start_frame=job_plan.start, chroma=job.settings.video_chroma,
            timecode=timecode.shifted(job_plan.info.timecode, job_plan.start, job_plan.info.fps)
            if job_plan.info.timecode else None,
        )
    if not final.stitches:  # final/ is then an 8-bit copy of frames/; keep the work directory small
        shutil.rmtree(frames, ignore_errors=True)
    work.record_outputs([output])
    return output


def _save_output_frame(path: Path, rgb16: np.ndarray, bit_depth: int) -> None:
    """A 16-bit sRGB frame of the work directory (the optimizer's float levels) in the output's
    container: EXR as half-float linear light, 16 bit as it is, 8 bit rounded as videos get it."""
    if path.suffix.lower() == ".exr":
        sequences.write_exr(path, rgb16)
    elif bit_depth == 16:
        images.save_rgb(path, rgb16)
    else:
        images.save_rgb(path, images.to_uint8(rgb16, path))


def _printf_escaped(folder: Path) -> str:
    """A folder for a printf-style frame pattern (ffmpeg's and ours): a % in its name is literal."""
    return str(folder).replace("%", "%%")


def _refuse_unfinished(work: WorkDir, job_plan: Plan) -> None:
    """Never encode a gap or a damaged frame: every frame of the range present and intact."""
    indices = range(job_plan.start, job_plan.end)
    absent = [i for i in indices if not work.has(i)]
    if absent:
        raise InputError(f"{work.path}: frames not rendered yet: {number_ranges(absent)}")
    damaged = [i for i in indices if work.damage(i, job_plan.size)]  # stitched frames: stitch_border checks them
    if damaged:
        raise DamagedFrames(f"{work.path}: frames damaged since they were rendered: {number_ranges(damaged)}; "
                            "rendering them again replaces them")
