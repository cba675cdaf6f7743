"""Seams between chunks rendered independently (farm ranges / Ray), and the Ray speed-up.

    python benchmarks/seams.py [--end 24] [--chunk-size 8] [--overlaps 0,2,4,6] [--size 160] [--workers 1,2]

For each overlap the clip's range is rendered as farm tasks (`render_range`, exactly what
`--frames A-B` runs), assembled with the seam cross-fades, and E_warp (flow on the source) is
computed per frame pair of the encoded frames. A chunk boundary at frame F with warm-up W
spreads the jump between two chains over the pairs (F-W-1, F-W) ... (F-1, F): those pairs are
the seam pairs; the table compares their mean and worst value with the mean of all other pairs.
Then the whole range is rendered through Ray with 1 and 2 CPU workers for the wall time.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import metrics, render  # noqa: E402
from pipeline.chunks import plan_chunks  # noqa: E402
from pipeline.config import Job, make_settings  # noqa: E402


def seam_pairs(chunks) -> set[int]:
    """t of the pairs (t, t+1) over which each chunk boundary is spread."""
    return {t for chunk in chunks[1:] for t in range(chunk.first - chunk.warmup - 1, chunk.first)}


def farm_render(job: Job, start: int, end: int) -> Path:
    """Every chunk as its own farm task, then assembly; returns the folder of encoded frames."""
    for chunk in plan_chunks(start, end, job.settings.chunk_size, job.settings.overlap):
        render.render_range(job, chunk.first, chunk.last)
    job_plan = render.plan(job)
    render.assemble(job, job_plan)
    final = job.workdir_path / "final"
    return final if final.is_dir() else job.workdir_path / "frames"


def seam_row(job: Job, start: int, end: int) -> dict:
    began = time.perf_counter()
    frames = farm_render(job, start, end)
    seconds = time.perf_counter() - began
    per_pair = metrics.evaluate_clip(job.video, frames, source_start=start)["per_pair"]
    chunks = plan_chunks(start, end, job.settings.chunk_size, job.settings.overlap)
    seams = seam_pairs(chunks)
    at_seams = [e for t, e in enumerate(per_pair, start) if t in seams]
    others = [e for t, e in enumerate(per_pair, start) if t not in seams]
    boundary = [per_pair[c.first - 1 - start] for c in chunks[1:]]
    return {"overlap": job.settings.overlap, "seam pairs": len(at_seams), "seam mean": float(np.mean(at_seams)),
            "seam worst": float(np.max(at_seams)), "boundary pair mean": float(np.mean(boundary)),
            "other pairs mean": float(np.mean(others)), "seam mean ÷ others": float(np.mean(at_seams) / np.mean(others)),
            "seam worst ÷ others": float(np.max(at_seams) / np.mean(others)), "render s": seconds}


def ray_wall_time(job: Job, workers: int) -> float:
    import ray

    from pipeline import farm

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        began = time.perf_counter()
        farm.render_on_ray(dataclasses.replace(job, settings=dataclasses.replace(job.settings, ray="local")))
        return time.perf_counter() - began
    finally:
        ray.shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=24)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--overlaps", default="0,2,4,6")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--workers", default="1,2", help="Ray CPU workers to time ('' to skip)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--style", type=Path, default=REPO / "samples" / "kandinsky.jpg")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="seams-"))
    base = make_settings(args.preset, {"size": args.size, "chunk_size": args.chunk_size})

    def job(name: str, **changes) -> Job:
        return Job(video=args.video, style=args.style, settings=dataclasses.replace(base, **changes),
                   output=root / f"{name}.mp4", start=args.start, end=args.end)

    rows = []
    for overlap in (int(o) for o in args.overlaps.split(",")):
        rows.append(seam_row(job(f"overlap{overlap}", overlap=overlap), args.start, args.end))
        print(rows[-1], flush=True)
    seam_table = markdown_table(rows, ["overlap", "seam pairs", "seam mean", "seam worst", "boundary pair mean",
                                       "other pairs mean", "seam mean ÷ others", "seam worst ÷ others", "render s"])
    print(seam_table)
    append_results("Seams between chunks", seam_table,
                   f"Sample clip frames {args.start}-{args.end - 1} at {args.size} px, chunks of {args.chunk_size}, "
                   f"preset `{args.preset}`, rendered as farm tasks (`--frames`) and assembled. E_warp per pair of "
                   "the encoded (cross-faded) frames; seam pairs = the overlap + 1 pairs each boundary is spread "
                   "over; 'boundary pair' = the pair (first - 1, first) of each chunk.")

    timings = []
    for workers in (int(w) for w in args.workers.split(",") if w):
        seconds = ray_wall_time(job(f"ray{workers}", overlap=4), workers)
        timings.append({"Ray CPU workers": workers, "wall s": seconds})
        print(timings[-1], flush=True)
    if timings:
        for row in timings:
            row["speed-up"] = timings[0]["wall s"] / row["wall s"]
        table = markdown_table(timings, ["Ray CPU workers", "wall s", "speed-up"])
        print(table)
        append_results("Ray: one vs two workers", table,
                       "Same range and settings, overlap 4, a fresh local Ray cluster per row (start-up included).")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
