"""Temporal stability and time to quality on the sample clip, one table for both.

    python benchmarks/stability.py [--frames 12] [--size 0] [--preset default]

Renders the first N frames once per variant, each from the same first frame (the cold
baseline's), and reports:
- E_warp (Lai et al. 2018) of the PNG frames, measured with an estimator the render does not
  use (metrics.EVALUATION_FLOW, DeepFlow), with its ratio to the cold per-frame baseline and to
  the per-pair flow floor (each frame carried one step along the render's flow; a ratio of means);
- structure (edge correlation with the source, mean over frames) and its drift (last quarter ÷
  first quarter), and the mean content + style loss of the later frames, each as a ratio to the
  cold baseline's, because stability bought by ignoring the content is worthless;
- mean evaluations and seconds per frame, and how many evaluations a frame needed to reach
  the loss the cold baseline reached with its full budget (time to quality).
The table is printed and appended to benchmarks/RESULTS.md with the command and the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import chain, metrics  # noqa: E402
from pipeline.chunks import Chunk  # noqa: E402
from pipeline.config import Job, make_settings  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402


def variants(settings, temporal_weights):
    """Name -> settings. The cold baseline spends the first frame's budget on every frame."""
    cold = dataclasses.replace(settings, init="content", temporal_weight=0.0, frame_iterations=settings.first_frame_iterations)
    chosen = {
        "cold per-frame (baseline)": cold,
        "init content, same budget as warm": dataclasses.replace(settings, init="content", temporal_weight=0.0),
        "init previous": dataclasses.replace(settings, init="previous", temporal_weight=0.0),
        "init previous-warped": dataclasses.replace(settings, init="previous-warped", temporal_weight=0.0),
    }
    for weight in temporal_weights:
        chosen[f"previous-warped + temporal {weight:g}"] = dataclasses.replace(settings, init="previous-warped", temporal_weight=weight)
    return chosen


def render_variant(job: Job, frames: int, seed_workdir: Path | None) -> Path:
    """Frames [0, frames) into the job's work directory, frame 0 (and its stats) from the baseline."""
    frames_dir = WorkDir(job.workdir_path).frame_path(0).parent
    if seed_workdir is not None:
        for folder, name in (("frames", "000000.png"), ("stats", "000000.json")):
            (job.workdir_path / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(seed_workdir / folder / name, job.workdir_path / folder / name)
    chain.render_frames(job, Chunk(0, frames), continue_chain=True)
    return frames_dir


def later_frame_stats(workdir: Path, frames: int) -> list[dict]:
    return [json.loads((workdir / "stats" / f"{i:06d}.json").read_text()) for i in range(1, frames)]


def evaluations_to_reach(trace: list, target: float) -> float:
    """First evaluation count whose temporal-free loss is at or below `target` (inf: never)."""
    return next((evals for evals, _, quality in trace if quality <= target), np.inf)


def measure(name, job, frames, baseline_stats, seed_workdir):
    frames_dir = render_variant(job, frames, seed_workdir)
    report = metrics.evaluate_clip(job.video, frames_dir, metrics.EVALUATION_FLOW, carry_flow=job.settings.flow)
    stats = later_frame_stats(job.workdir_path, frames)
    settings = job.settings
    content_style = [settings.content_weight * s["losses"]["content"] + settings.style_weight * s["losses"]["style"]
                     for s in stats]
    reached = [evaluations_to_reach(s["trace"], b["losses"]["total"]) for s, b in zip(stats, baseline_stats or stats)]
    return {
        "variant": name,
        "E_warp": report["stylized"],
        "source E_warp": report["source"],
        "flow floor": report["flow_floor"],
        "× flow floor": report["ratio_to_floor"],
        "structure": report["structure"],
        "drift": report["structure_drift"],
        "content+style": float(np.mean(content_style)),
        "evaluations": float(np.mean([s["evaluations"] for s in stats])),
        "seconds": float(np.mean([s["seconds"] for s in stats])),
        "evals to cold quality": float(np.median(reached)),
        "reached": sum(np.isfinite(reached)),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=0, help="long side; 0: the clip's own size")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--temporal-weights", default="10,50,200")
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--style", type=Path, default=REPO / "samples" / "kandinsky.jpg")
    parser.add_argument("--keep", type=Path, help="keep the rendered frames here")
    parser.add_argument("--print-only", action="store_true", help="print the table; do not append it to RESULTS.md")
    args = parser.parse_args(argv)

    settings = make_settings(args.preset, {"size": args.size})
    weights = [float(w) for w in args.temporal_weights.split(",") if w]
    root = args.keep or Path(tempfile.mkdtemp(prefix="stability-"))
    rows, baseline, seed = [], None, None
    for name, variant in variants(settings, weights).items():
        job = Job(video=args.video, style=args.style, settings=variant, workdir=root / name.replace(" ", "_"))
        row = measure(name, job, args.frames, baseline, seed)
        if baseline is None:
            baseline, seed = later_frame_stats(job.workdir_path, args.frames), job.workdir_path
            cold = row
        rows.append(row)
        print(row, flush=True)
    for row in rows:
        row["× cold E_warp"] = row["E_warp"] / cold["E_warp"]
        row["× cold structure"] = row["structure"] / cold["structure"]
        row["× cold content+style"] = row["content+style"] / cold["content+style"]
        row["× cold evals"] = row["evaluations"] / cold["evaluations"]
    columns = ["variant", "E_warp", "× cold E_warp", "× flow floor", "structure", "× cold structure", "drift",
               "content+style", "× cold content+style", "evaluations", "× cold evals", "evals to cold quality",
               "reached", "seconds"]
    table = markdown_table(rows, columns)
    note = (f"Sample clip first {args.frames} frames at {'its own size' if not args.size else f'{args.size} px'}, "
            f"preset `{args.preset}`, style {args.style.name}. E_warp measured with {metrics.EVALUATION_FLOW} "
            f"(the render uses {settings.flow}); × flow floor = mean E_warp ÷ mean per-pair floor (stylized frame t "
            f"carried one step along {settings.flow}, measured the same way). Structure over all frames (frame 0 is "
            "shared); drift = last quarter ÷ first quarter. Losses and evaluations: later frames only. "
            f"Source E_warp {cold['source E_warp']:.3g}, cold baseline's floor {cold['flow floor']:.3g}. "
            "'content+style' = weighted content + style loss of the final frames (mean over later frames); "
            "'evals to cold quality' = median evaluations until a frame's loss without the temporal term "
            "(content + style + TV) reached the cold baseline's final loss for that frame "
            f"('reached' of {args.frames - 1} frames got there). '× cold evals' of a warm variant is mostly the "
            "configured budget ratio (frame_iterations ÷ first_frame_iterations), not a measured saving; "
            "'evals to cold quality' is the measured one.")
    print(table)
    if not args.print_only:
        append_results("Temporal stability and time to quality", table, note)
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
