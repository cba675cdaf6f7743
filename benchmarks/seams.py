"""Chunk borders of a farm render: the old cross-fade against the stitch, next to one chain.

    python benchmarks/seams.py [--end 36] [--chunk-size 12] [--overlap 6] [--size 128]
                               [--presets default,preview] [--estimator deepflow] [--sheet /tmp/seam.png]
                               [--workers 2]

For each preset the clip's range is rendered as farm tasks (`render_range`, exactly what
`--frames A-B` runs), then joined two ways over the frames before each border:
- cross-fade (what assembly did before stitches): the earlier chunk's frame blended linearly
  into the later chunk's warm-up frame;
- stitch (stitch.py, what assembly does now).
The same range is also rendered as one chain. Every variant is measured with an optical flow
the render does not use (`--estimator`, DeepFlow by default; the render uses DIS):
- seam ÷ others: mean E_warp of the seam pairs (from the frame before the stitched span to the
  later chunk's first own frame) over the mean of all other pairs; "over floor": the same with
  each pair's E_warp over its own flow floor, so pairs with more motion do not weigh more;
- E_warp ÷ floor: the whole range against its per-pair flow floor (metrics.py);
- texture: variance of the Laplacian of each frame of the stitched spans ÷ the mean of the
  unstitched frames around it (up to 3 on each side): a cross-fade's double exposure loses
  contrast, so its ratio falls below 1;
- structure of the span frames ÷ the others' (content fidelity).
Evaluations of warm-ups and stitches are given as a share of the farm render's total; beside them
the chain gap D (how far the two chains' frames over the overlap are apart) and the seam ratio
that crossing it in equal steps predicts, 1 + D/(n+1)² ÷ the other pairs' mean (unmasked, so only
an estimate of what the masked E_warp measures).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import chain, images, metrics, planning, render  # noqa: E402
from pipeline.chunks import Chunk, plan_chunks  # noqa: E402
from pipeline.config import Job, make_settings  # noqa: E402
from pipeline.stitch import borders, stitch_missing  # noqa: E402
from pipeline.workdir import FinalFrames, WorkDir, stitch_dir, stitch_starts  # noqa: E402

AROUND = 3  # unstitched frames on each side that a span frame's texture is compared with


def farm_render(job: Job) -> float:
    """Every chunk as its own farm task; returns the seconds it took."""
    began = time.perf_counter()
    job_plan = planning.plan(job)
    for chunk in plan_chunks(job_plan.start, job_plan.end, job.settings.chunk_size, job.settings.overlap):
        render.render_range(job, chunk.first, chunk.last)
    return time.perf_counter() - began


def single_chain(job: Job) -> float:
    began = time.perf_counter()
    job_plan = planning.plan(job)
    planning.check_outputs(job, job_plan)
    WorkDir(job.workdir_path).open(planning.manifest(job, job_plan))
    chain.render_frames(job, Chunk(job_plan.start, job_plan.end), job_plan=job_plan, continue_chain=True)
    return time.perf_counter() - began


def cross_faded(work: WorkDir, spans: list[range], folder: Path, start: int, end: int) -> Path:
    """The frames as assembly encoded them before stitches: over each span, the earlier chunk's
    frame blended into the later chunk's warm-up frame with a weight rising k/(n+1)."""
    folder.mkdir(parents=True, exist_ok=True)
    blended = {}
    for span in spans:
        warmup = work.warmup(span.stop)
        for k, index in enumerate(span, 1):
            weight = k / (len(span) + 1)
            mixed = (1 - weight) * work.load(index).astype(np.float32) + weight * warmup.load(index).astype(np.float32)
            blended[index] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    for index in range(start, end):
        images.save_rgb(folder / f"{index:06d}.png", blended[index] if index in blended else work.load(index))
    return folder


def measure(job: Job, frames: Path, spans: list[range], estimator: str) -> dict:
    start = job.start
    result = metrics.evaluate_clip(job.video, frames, estimator, source_start=start, carry_flow=job.settings.flow)
    per_pair = dict(enumerate(result["per_pair"], start))
    seam_pairs = {t for span in spans for t in range(span.start - 1, span.stop)}
    at_seams = [e for t, e in per_pair.items() if t in seam_pairs]
    others = [e for t, e in per_pair.items() if t not in seam_pairs]
    # Each pair over its own floor: a clip whose motion gathers at a border (the cradle's balls)
    # has seam pairs above the others even in one chain; over the floor, motion weighs the same.
    over_floor = {t: e / f for t, (e, f) in enumerate(zip(result["per_pair"], result["floor_per_pair"]), start) if f > 0}
    texture = dict(enumerate(result["texture_energy_per_frame"], start))
    structure = dict(enumerate(result["structure_per_frame"], start))
    in_spans = {i for span in spans for i in span}
    texture_ratios = [texture[i] / np.mean(_around(texture, span, in_spans)) for span in spans for i in span]
    return {
        "E_warp": result["stylized"], "E_warp ÷ floor": result["ratio_to_floor"],
        "seam ÷ others": float(np.mean(at_seams) / np.mean(others)),
        "worst seam ÷ others": float(np.max(at_seams) / np.mean(others)),
        "seam ÷ others over floor": float(np.mean([v for t, v in over_floor.items() if t in seam_pairs])
                                          / np.mean([v for t, v in over_floor.items() if t not in seam_pairs])),
        "texture min": float(np.min(texture_ratios)), "texture max": float(np.max(texture_ratios)),
        "structure span ÷ others": float(np.mean([structure[i] for i in in_spans])
                                         / np.mean([v for i, v in structure.items() if i not in in_spans])),
        "per_pair": result["per_pair"], "texture_ratios": texture_ratios,
    }


def _around(values: dict[int, float], span: range, in_spans: set[int]) -> list[float]:
    before = [i for i in range(span.start - AROUND, span.start) if i in values and i not in in_spans]
    after = [i for i in range(span.stop, span.stop + AROUND) if i in values and i not in in_spans]
    return [values[i] for i in before + after]


def chain_gap(work: WorkDir, spans: list[range]) -> float:
    """D: mean squared difference (RGB in [0, 1]) between the earlier chain's and the later chain's
    frames over the stitched spans. Crossing it in len(span) + 1 equal steps adds about
    D/(len(span) + 1)² to each seam pair's E_warp, and no path does better (stitch.py)."""
    return float(np.mean([np.mean(np.square(work.load(i) / 255.0 - work.warmup(span.stop).load(i) / 255.0))
                          for span in spans for i in span]))


def evaluations(work: WorkDir, start: int, end: int) -> dict[str, int]:
    def total(folder: WorkDir) -> int:
        return sum(stats["evaluations"] for stats in folder.read_stats(range(start, end)).values())
    warmups = sum(total(work.warmup(first)) for first in work.warmup_starts())
    stitches = sum(total(stitch_dir(work, first)) for first in stitch_starts(work))
    return {"own": total(work), "warm-ups": warmups, "stitches": stitches}


def contact_sheet(rows: dict[str, list[np.ndarray]], path: Path, scale: int = 2) -> None:
    """One row per variant, frames left to right, each scaled up `scale`× (nearest: pixels stay visible)."""
    import cv2

    strips = []
    for name, frames in rows.items():
        strip = np.concatenate([np.pad(f, ((2, 2), (2, 2), (0, 0)), constant_values=255) for f in frames], axis=1)
        label = np.full((14, strip.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        strips += [label, strip]
    sheet = np.concatenate(strips, axis=0)
    images.save_rgb(path, cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))


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


COLUMNS = ["preset", "join", "E_warp", "E_warp ÷ floor", "seam ÷ others", "worst seam ÷ others",
           "seam ÷ others over floor", "texture min",
           "texture max", "structure span ÷ others"]


def run_preset(args, preset: str, root: Path) -> tuple[list[dict], dict]:
    settings = make_settings(preset, {"size": args.size, "chunk_size": args.chunk_size, "overlap": args.overlap})

    def job(name: str) -> Job:
        return Job(video=args.video, style=args.style, settings=settings, output=root / f"{preset}-{name}.mp4",
                   start=args.start, end=args.end)

    farm_job, chain_job = job("farm"), job("chain")
    seconds = {"farm chunks": farm_render(farm_job)}
    work = WorkDir(farm_job.workdir_path)
    spans = [border.frames for border in borders(work, args.start, args.end, args.overlap)]
    before = cross_faded(work, spans, root / f"{preset}-crossfade", args.start, args.end)
    began = time.perf_counter()
    stitch_missing(farm_job, planning.plan(farm_job))
    seconds["stitches"] = time.perf_counter() - began
    after = FinalFrames(work).folder_for_encoding(args.start, args.end)
    variants = {"cross-fade": before, "stitch": after}
    if not args.no_chain:
        seconds["single chain"] = single_chain(chain_job)
        variants["single chain"] = chain_job.workdir_path / "frames"
    rows = [{"preset": preset, "join": name, **measure(farm_job, frames, spans, args.estimator)}
            for name, frames in variants.items()]
    counts = evaluations(work, args.start, args.end)
    gap, steps = chain_gap(work, spans), np.mean([len(span) + 1 for span in spans])
    stitch_row = next(row for row in rows if row["join"] == "stitch")
    others = float(np.mean([e for t, e in enumerate(stitch_row["per_pair"], args.start)
                            if not any(span.start - 1 <= t < span.stop for span in spans)]))
    extra = {"preset": preset, **counts, "extra share": (counts["warm-ups"] + counts["stitches"]) / sum(counts.values()),
             **{f"{k} s": v for k, v in seconds.items()}, "chain gap D": gap,
             "equal-step seam estimate": 1 + gap / steps**2 / others}
    if args.sheet and spans:
        span = spans[0]
        shown = range(max(span.start - 2, args.start), min(span.stop + 2, args.end))  # a span may start at frame 1
        sheet_rows = {f"{preset} cross-fade": [images.load_rgb(before / f"{i:06d}.png") for i in shown],
                      f"{preset} stitch": [images.load_rgb(after / f"{i:06d}.png") for i in shown],
                      "earlier chain": [work.load(i) for i in shown],
                      "later chain (warm-up, own)": [(work.warmup(span.stop) if i < span.stop and i >= span.start else work).load(i)
                                                     for i in shown]}
        contact_sheet(sheet_rows, args.sheet.with_name(f"{args.sheet.stem}-{preset}{args.sheet.suffix}"))
    return rows, extra


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=36)
    parser.add_argument("--chunk-size", type=int, default=12)
    parser.add_argument("--overlap", type=int, default=6)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--presets", default="default,preview")
    parser.add_argument("--estimator", default=metrics.EVALUATION_FLOW, help="flow that measures E_warp (not the render's)")
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--style", type=Path, default=REPO / "samples" / "kandinsky.jpg")
    parser.add_argument("--sheet", type=Path, help="also write contact sheets across the first border (PRESET added to the name)")
    parser.add_argument("--workers", default="", help="also time the farm render on Ray with these CPU workers, e.g. 2")
    parser.add_argument("--json", type=Path, help="also write every figure, per pair and per frame")
    parser.add_argument("--root", type=Path, help="work directories here, kept (a rerun resumes them); default: a "
                        "temporary folder, deleted at the end")
    parser.add_argument("--no-chain", action="store_true", help="skip the single-chain render")
    parser.add_argument("--no-record", action="store_true", help="print only; append nothing to RESULTS.md")
    args = parser.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="seams-"))
    root.mkdir(parents=True, exist_ok=True)
    rows, extras = [], []
    for preset in args.presets.split(","):
        preset_rows, extra = run_preset(args, preset, root)
        rows += preset_rows
        extras.append(extra)
        for row in preset_rows:
            print({k: v for k, v in row.items() if k in COLUMNS}, flush=True)
        print(extra, flush=True)
    timings = []
    for workers in (int(w) for w in args.workers.split(",") if w):
        for preset in args.presets.split(","):
            settings = make_settings(preset, {"size": args.size, "chunk_size": args.chunk_size, "overlap": args.overlap})
            job = Job(video=args.video, style=args.style, settings=settings, output=root / f"ray{workers}-{preset}.mp4",
                      start=args.start, end=args.end)
            timings.append({"preset": preset, "Ray CPU workers": workers, "wall s": ray_wall_time(job, workers)})
            print(timings[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "evaluations": extras, "ray": timings}, indent=1, default=float))
    where = (f"`{args.video.name}` frames {args.start}-{args.end - 1} at {args.size} px, chunks of {args.chunk_size} "
             f"(a border every {args.chunk_size} frames), overlap {args.overlap}, rendered as farm tasks (`--frames`). "
             f"E_warp measured with {args.estimator} (the render uses its preset's DIS flow); floor per pair.")
    table = markdown_table(rows, COLUMNS)
    cost = markdown_table(extras, ["preset", "own", "warm-ups", "stitches", "extra share", "farm chunks s",
                                   "stitches s", "single chain s", "chain gap D", "equal-step seam estimate"])
    print(table, cost, sep="\n\n")
    record = (lambda *a: None) if args.no_record else append_results
    record("Chunk borders: cross-fade vs stitch", f"{table}\n\nEvaluations (L-BFGS loss evaluations) and "
                   f"seconds (one process, 2 cores):\n\n{cost}", where + " " + _provenance())
    if timings:
        ray_table = markdown_table(timings, ["preset", "Ray CPU workers", "wall s"])
        print(ray_table)
        record("Farm render with stitches on Ray", ray_table,
                       where + " Chunks and stitches as Ray tasks, a fresh local cluster per row (start-up included).")
    if args.root is None:
        shutil.rmtree(root)


def _provenance() -> str:
    import subprocess

    import cv2
    import tensorflow as tf

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    return (f"Commit {commit}{' with uncommitted changes' if dirty else ''}; TensorFlow {tf.__version__}, "
            f"OpenCV {cv2.__version__}, NumPy {np.__version__}.")


if __name__ == "__main__":
    main()
