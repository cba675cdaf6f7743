"""Optimizers on the same frames: evaluations to reach SciPy's final loss, the final loss at
equal budget, wall time, and the share of wall time spent outside the loss evaluations.

    python benchmarks/optimizers.py [--frames 3] [--size 128] [--first 100] [--later 20]
                                    [--optimizers lbfgs,adam] [--xla off] [--no-early-stop] [--record]
                                    [--video V] [--style S] [--cold-at 0,12,24] [--self-spread 0.001]

SciPy's L-BFGS-B ("scipy-lbfgs") renders the chain first, cold first frame then warm frames
along the flow with the temporal loss, as a render does; every optimizer then solves exactly
the frames SciPy's chain posed (same content, start image, guide and budget), so losses compare
frame by frame. With --cold-at, each frame listed is instead the first of its own chain (a cold
frame, after its coarse levels), so cold frames of several clips and styles can be compared.
Evaluation time: SciPy's is timed on the host around Stylizer.evaluate (the graph call and the
copies to NumPy); the device optimizers' by tf.timestamp around the loss inside their loop (on a GPU
those stamp when the work is queued, not when it is done, so there the share outside is not
measured by this; compare wall times). Wall time is the whole Stylizer.stylize call (targets set, optimization,
result read back), after a warm-up frame has traced every graph; "targets excluded" leaves out
setting the content targets too (a VGG forward pass per frame, the same for every optimizer).
SciPy may overrun its budget by its last line search, so losses are compared at equal
evaluations: each optimizer's final loss against SciPy's best within as many evaluations.
With --self-spread EPS, SciPy also solves every frame again from its start moved by seeded uniform
noise of at most EPS grey levels: SciPy against itself, the spread any second optimizer that
rounds differently (float32 against float64) should be judged within, since L-BFGS paths on this
loss part after a few iterations and end apart by chance, not by method.
The table is printed; with --record it is also appended to benchmarks/RESULTS.md with the
command, the machine and the code's commit.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown_table, publish  # noqa: E402
from pipeline import chain, planning, video  # noqa: E402
from pipeline.config import Job, make_settings  # noqa: E402
from pipeline.events import ignore  # noqa: E402
from pipeline.stylize import FrameResult, Stylizer, TemporalGuide  # noqa: E402

CLIP = REPO / "samples" / "realshort.mp4"
STYLE = REPO / "samples" / "kandinsky.jpg"
REFERENCE = "scipy-lbfgs"
RATIO, REACHED = "÷ SciPy's at equal evaluations", "evaluations to SciPy's final loss"
ON_THE_WAY = (10, 30)  # where the paths part: loss ÷ SciPy's by these evaluations
TRAIL = [f"÷ SciPy's by {n}" for n in ON_THE_WAY]
COLUMNS = ["optimizer", "xla", "frame", "budget", "evaluations", "final loss", RATIO, *TRAIL, REACHED, "wall s",
           "ms / evaluation", "outside evaluation %", "targets excluded %"]


@dataclass(frozen=True)
class Problem:
    """One frame as the chain posed it to Stylizer.stylize."""

    content: np.ndarray
    start: np.ndarray
    budget: int
    guide: TemporalGuide | None


@dataclass(frozen=True)
class Solved:
    result: FrameResult
    evaluation_seconds: float
    target_seconds: float  # setting the content targets: one VGG forward, not the optimizer's


def reference_chain(job: Job, sources: list[np.ndarray]) -> tuple[list[Problem], list[Solved]]:
    """SciPy's chain over `sources`: each frame's problem as the chain posed it, and its solution."""
    stylizer = chain.stylizer_for(job, planning.plan(job))
    warm_up(stylizer, sources[0])
    problems: list[Problem] = []
    solutions: list[Solved] = []
    pose = stylizer.stylize

    def recording(content, start, budget, guide=None, on_iterate=None):
        problems.append(Problem(content, start, budget, guide))
        solutions.append(timed_on_host(stylizer, pose, content, start, budget, guide, on_iterate))
        return solutions[-1].result

    stylizer.stylize = recording  # the chain (and stylize_cold) call it through the instance
    history: list[chain.Previous] = []
    for source in sources:
        result = chain.stylize_frame(job, stylizer, source, history, ignore)
        history = [chain.Previous(source, result.image, None), *history][:chain.history_reach(job.settings.temporal_frames)]
    return problems, solutions


def warm_up(stylizer: Stylizer, frame: np.ndarray) -> float:
    """Trace every graph the optimizer uses (a short frame), so no row pays for tracing; seconds taken."""
    began = time.perf_counter()
    stylizer.stylize(frame, frame, budget=3)
    return time.perf_counter() - began


def solve_nudged(stylizer: Stylizer, problem: Problem, amplitude: float, seed: int) -> Solved:
    """SciPy on one frame from a start moved by uniform noise of at most `amplitude` grey levels."""
    noise = np.random.default_rng(seed).uniform(-amplitude, amplitude, problem.start.shape)
    start = np.clip(problem.start.astype(np.float64) + noise, 0, 255).astype(np.float32)
    return timed_on_host(stylizer, stylizer.stylize, problem.content, start, problem.budget, problem.guide)


def timed_on_host(stylizer: Stylizer, stylize: Callable[..., FrameResult], *args) -> Solved:
    """SciPy's `stylize(*args)` on one frame, its time in the loss and the targets timed on the host."""
    with TimedMethod(stylizer, "evaluate") as evaluations, TimedMethod(stylizer, "_set_targets") as targets:
        result = stylize(*args)
    return Solved(result, evaluations.seconds, targets.seconds)


def solve(stylizer: Stylizer, problem: Problem) -> Solved:
    """A device optimizer on one frame, with the time its loop spent in the loss."""
    with TimedMethod(stylizer, "_set_targets") as targets:
        result = stylizer.stylize(problem.content, problem.start, problem.budget, problem.guide)
    return Solved(result, stylizer.device_optimizer.evaluation_seconds, targets.seconds)


class TimedMethod:
    """Host seconds spent in one method of one object while the `with` block runs."""

    def __init__(self, owner: object, name: str):
        self.owner, self.name, self.seconds = owner, name, 0.0

    def __enter__(self) -> "TimedMethod":
        method = getattr(self.owner, self.name)

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *_) -> None:
        delattr(self.owner, self.name)  # back to the class's method


def loss_by(result: FrameResult, evaluations: int) -> float:
    """The lowest loss of an iteration ended within `evaluations` (SciPy may overrun its budget by
    its last line search, so its final loss can cost more evaluations than the budget)."""
    return min((total for used, total, _ in result.trace if used <= evaluations), default=float("nan"))


def evaluations_to_reach(result: FrameResult, loss: float) -> int | str:
    """Evaluations by the end of the first iteration at or below `loss`; "-" if none got there."""
    return next((evaluations for evaluations, total, _ in result.trace if total <= loss), "-")


def row(name: str, xla: str, frame: int, problem: Problem, solved: Solved, reference: Solved) -> dict:
    result = solved.result
    wall, inside = result.seconds, solved.evaluation_seconds
    return {
        "optimizer": name, "xla": xla, "frame": f"{frame} ({'cold' if problem.guide is None else 'warm'})",
        "budget": problem.budget, "evaluations": result.evaluations, "final loss": f"{result.losses['total']:.5f}",
        RATIO: f"{result.losses['total'] / loss_by(reference.result, result.evaluations):.4f}",
        **{name: f"{loss_by(result, n) / loss_by(reference.result, n):.4f}" if n < problem.budget else ""
           for name, n in zip(TRAIL, ON_THE_WAY)},
        REACHED: evaluations_to_reach(result, reference.result.losses["total"]),
        "wall s": wall, "ms / evaluation": 1000 * inside / max(result.evaluations, 1),
        "outside evaluation %": 100 * (wall - inside) / wall,
        "targets excluded %": 100 * (wall - inside - solved.target_seconds) / (wall - solved.target_seconds),
    }


def total_row(name: str, xla: str, rows: list[dict], solved: list[Solved]) -> dict:
    wall = sum(s.result.seconds for s in solved)
    inside = sum(s.evaluation_seconds for s in solved)
    targets = sum(s.target_seconds for s in solved)
    evaluations = sum(s.result.evaluations for s in solved)
    reached = [r[REACHED] for r in rows]
    return {
        "optimizer": f"**{name}**", "xla": xla, "frame": "all", "budget": sum(r["budget"] for r in rows),
        "evaluations": evaluations, "final loss": "",
        **{name: f"{np.mean([float(r[name]) for r in rows if r[name]] or np.nan):.4f}" for name in [RATIO, *TRAIL]},
        REACHED: f"{sum(isinstance(r, int) for r in reached)}/{len(reached)} frames",
        "wall s": wall, "ms / evaluation": 1000 * inside / max(evaluations, 1),
        "outside evaluation %": 100 * (wall - inside) / wall,
        "targets excluded %": 100 * (wall - inside - targets) / (wall - targets),
    }


def read_sources(job: Job, frames: int) -> list[np.ndarray]:
    job_plan = planning.plan(job)
    return list(video.read_frames(job_plan.info, 0, frames, job_plan.size))


def cold_problems(job: Job, sources: list[np.ndarray]) -> tuple[list[Problem], list[Solved]]:
    """Each source as the first frame of its own SciPy chain: its full-size cold problem."""
    posed = [reference_chain(job, [source]) for source in sources]
    return [problems[-1] for problems, _ in posed], [solutions[-1] for _, solutions in posed]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--first", type=int, default=100, help="evaluations of the cold first frame")
    parser.add_argument("--later", type=int, default=20, help="evaluations of every later frame")
    parser.add_argument("--optimizers", default="lbfgs,adam", help="compared with scipy-lbfgs")
    parser.add_argument("--xla", default="off", help="off, on or off,on: XLA for the compared optimizers' loss")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="stop_window 0: every frame spends its budget, so optimizers compare by evaluations alone")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--style", type=Path, default=STYLE)
    parser.add_argument("--cold-at", default="",
                        help="frame indices, each solved cold as a chain's first frame (instead of one chain)")
    parser.add_argument("--self-spread", default="",
                        help="grey levels, comma-separated: SciPy again from starts nudged by at most this much")
    args = parser.parse_args(argv)
    cold_at = [int(index) for index in args.cold_at.split(",") if index]

    overrides = {"size": args.size, "first_frame_iterations": args.first, "frame_iterations": args.later,
                 "optimizer": REFERENCE, "xla": "off", **({"stop_window": 0} if args.no_early_stop else {})}
    settings = make_settings(args.preset, overrides)
    job = Job(video=args.video, style=args.style, settings=settings)
    sources = read_sources(job, max(cold_at) + 1 if cold_at else args.frames)
    problems, reference = (cold_problems(job, [sources[i] for i in cold_at]) if cold_at
                           else reference_chain(job, sources))
    frames = cold_at or range(len(problems))
    rows = [row(REFERENCE, "off", i, p, s, r) for i, p, s, r in zip(frames, problems, reference, reference)]
    totals = [total_row(REFERENCE, "off", rows, reference)]
    for amplitude in [float(a) for a in args.self_spread.split(",") if a]:
        stylizer = chain.stylizer_for(job, planning.plan(job))
        warm_up(stylizer, sources[0])
        solved = [solve_nudged(stylizer, problem, amplitude, seed) for seed, problem in enumerate(problems)]
        name = f"{REFERENCE} ±{amplitude:g}"
        nudged_rows = [row(name, "off", i, p, s, r) for i, p, s, r in zip(frames, problems, solved, reference)]
        rows += nudged_rows
        totals.append(total_row(name, "off", nudged_rows, solved))
    for name in [n for n in args.optimizers.split(",") if n]:
        for xla in args.xla.split(","):
            variant = dataclasses.replace(job, settings=dataclasses.replace(settings, optimizer=name, xla=xla))
            stylizer = chain.stylizer_for(variant, planning.plan(variant))
            traced = warm_up(stylizer, sources[0])
            solved = [solve(stylizer, problem) for problem in problems]
            variant_rows = [row(name, xla, i, p, s, r) for i, p, s, r in zip(frames, problems, solved, reference)]
            rows += variant_rows
            totals.append(total_row(name, xla, variant_rows, solved))
            print(f"{name} xla {xla}: warm-up (tracing) {traced:.1f} s", flush=True)
    width, height = planning.plan(job).size
    table = markdown_table(rows + totals, COLUMNS)
    posed = (f"frames {args.cold_at} of {args.video.name}, each cold (the first of its own chain) with {args.first} evaluations"
             if cold_at else f"{args.frames} frames of {args.video.name}, the first cold with {args.first} evaluations, "
             f"then warm with {args.later}")
    note = (f"{posed}, at {width}x{height}, style {args.style.name}, preset `{args.preset}`"
            f"{' (no early stop)' if args.no_early_stop else ''}; every optimizer solves the "
            f"frames SciPy's chain posed. Outside evaluation: wall time of Stylizer.stylize minus the time in the loss.")
    publish("Optimizers", table, note, args.record)


if __name__ == "__main__":
    main()
