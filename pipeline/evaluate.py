"""`cli.py eval`: how stable and how faithful a stylized clip is, and what each frame's optimization reached.

E_warp, its per-pair flow floor, structure and texture come from metrics; per-frame losses and
stop reasons from a render's work directory when STYLIZED is one (or its frames folder), since
only the renderer knows them. With a cold baseline's work directory (a per-frame render of the
same frames: content init, no temporal loss, the first frame's budget on every frame), the
figures are also given as ratios to it.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import metrics
from .errors import InputError
from .flow import canonical_method
from .workdir import FinalFrames, WorkDir, stitch_starts

# The baseline must differ from the render only in how frames start and are budgeted.
_LOOK_SETTINGS = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "style_scale")


# The render whose work directory --baseline wants: every frame on its own, fully budgeted.
COLD_BASELINE_COMMAND = ("python cli.py SOURCE --style STYLE -o cold.mp4 --init cold  (same preset, size, "
                         "style and frame range as the render)")


def evaluate(source: Path, stylized: Path, start: int | None = None, estimator: str = metrics.EVALUATION_FLOW,
             render_flow: str | None = None, baseline: Path | None = None) -> dict:
    """All figures of `cli.py eval` as a JSON-ready dict; `warnings` lists what makes them doubtful.

    `start` is the source frame shown by the first stylized frame (default: a work directory's
    first frame number, else 0). `render_flow` is the flow the render used (default: the work
    directory's manifest, else the default preset's).
    """
    workdir = _workdir_of(stylized)
    frames = workdir.frame_path(0).parent if workdir else stylized
    settings = _settings_of(workdir)
    start = _first_index(frames) if start is None and workdir else start or 0
    if workdir is not None and stitch_starts(workdir):  # what is encoded: stitched frames at chunk borders
        indices = _frame_indices(frames)
        frames = FinalFrames(workdir).folder_for_encoding(indices[0], indices[-1] + 1)
    render_flow = render_flow or settings.get("flow")
    result = metrics.evaluate_clip(source, frames, estimator, source_start=start, carry_flow=render_flow)
    result["start"] = start
    result["warnings"] = [w for w in [flattery_warning(result["estimator"], render_flow)] if w]
    if workdir is not None:
        result["per_frame"] = {index: _frame_summary(stats, settings)
                               for index, stats in workdir.read_stats(_frame_indices(frames)).items()}
    if baseline is not None:
        result["baseline"] = compare_with_baseline(result, source, WorkDir(baseline), settings)
        result["warnings"] += result["baseline"].pop("warnings")
    return result


def flattery_warning(estimator: str, render_flow: str | None) -> str | None:
    """One line when E_warp is measured with the very flow the render optimized against."""
    if render_flow is None or canonical_method(render_flow, for_evaluation=True) != estimator:
        return None
    return (f"warning: E_warp measured with {estimator}, the flow the render used: the optimizer fitted this "
            f"instrument and the figure flatters; use --flow {metrics.EVALUATION_FLOW} or farneback")


def compare_with_baseline(result: dict, source: Path, baseline: WorkDir, settings: dict) -> dict:
    """Structure, content + style loss and evaluations of `result` as ratios to a cold render's.

    The loss is weighted with the evaluated render's own content and style weights on both sides,
    so both are judged by one yardstick; without stats on both sides the loss ratios are omitted.
    """
    indices = list(range(result["start"], result["start"] + result["frames"]))
    base_settings = _baseline_settings(baseline, indices)
    base_frames = (baseline.load(index) for index in indices)
    sources = metrics.read_source(source, indices[0], len(indices), tuple(result["size"]), baseline.path)
    base_structure = [metrics.structure(s, b) for s, b in zip(sources, base_frames)]
    comparison = {
        "workdir": str(baseline.path),
        "structure": metrics.defined_mean(base_structure),
        "structure_ratio": metrics.ratio(result["structure"], metrics.defined_mean(base_structure)),
        "structure_per_frame": base_structure,
        "warnings": _baseline_warnings(base_settings, settings),
    }
    ours, theirs = result.get("per_frame", {}), {i: _frame_summary(s, settings) for i, s in baseline.read_stats(indices).items()}
    both = [index for index in indices if index in ours and index in theirs]
    if both:
        comparison.update(_per_frame_ratios(both, ours, theirs))
    return comparison


def _per_frame_ratios(indices: list[int], ours: dict, theirs: dict) -> dict:
    def mean(summaries: dict, key: str) -> float:
        return metrics.defined_mean(float(summaries[i][key]) for i in indices)
    return {
        "content_style_ratio": metrics.ratio(mean(ours, "content_style"), mean(theirs, "content_style")),
        "content_style_ratio_per_frame": {i: metrics.ratio(ours[i]["content_style"], theirs[i]["content_style"])
                                          for i in indices},
        "evaluations_ratio": metrics.ratio(mean(ours, "evaluations"), mean(theirs, "evaluations")),
        "evaluations_ratio_per_frame": {i: metrics.ratio(ours[i]["evaluations"], theirs[i]["evaluations"])
                                        for i in indices},
    }


def _baseline_settings(baseline: WorkDir, indices: list[int]) -> dict:
    missing = [index for index in indices if not baseline.has(index)]
    if missing:
        raise InputError(f"{baseline.path}: the baseline lacks {len(missing)} of the evaluated frames "
                         f"(first missing: {missing[0]}); render them with: {COLD_BASELINE_COMMAND}")
    return _settings_of(baseline) if baseline.manifest_path.is_file() else {}


def _baseline_warnings(base: dict, ours: dict) -> list[str]:
    warnings = []
    cold = base.get("init") == "cold" or (base.get("init") == "content" and base.get("temporal_weight") == 0
                                          and base.get("frame_iterations") == base.get("first_frame_iterations"))
    if not cold:
        warnings.append("warning: the baseline is not a cold render (--init cold); ratios to it mean little")
    changed = [name for name in _LOOK_SETTINGS if ours and base and ours.get(name) != base.get(name)]
    if changed:
        warnings.append(f"warning: the baseline's look differs from the render's ({', '.join(changed)})")
    return warnings


def _workdir_of(stylized: Path) -> WorkDir | None:
    """The work directory STYLIZED is, or whose frames folder it is."""
    for candidate in (WorkDir(stylized), WorkDir(stylized.parent)):
        if candidate.manifest_path.is_file() and candidate.frame_path(0).parent.is_dir():
            return candidate
    return None


def render_settings(manifest: dict) -> dict:
    """The settings a render's frames were made with, as its work directory's manifest holds them."""
    return manifest.get("identity", {}).get("settings", {})


def _settings_of(workdir: WorkDir | None) -> dict:
    return render_settings(workdir.read_manifest() or {}) if workdir else {}


def _frame_indices(frames: Path) -> list[int]:
    return sorted(int(p.stem) for p in frames.glob("*.png") if p.stem.isdigit())


def _first_index(frames: Path) -> int:
    indices = _frame_indices(frames)
    if not indices:
        raise InputError(f"{frames}: no finished frames")
    return indices[0]


def _frame_summary(stats: dict, settings: dict) -> dict:
    losses = stats["losses"]
    summary = {"content": losses.get("content"), "style": losses.get("style"), "temporal": losses.get("temporal"),
               "total": losses.get("total"), "evaluations": stats.get("evaluations"),
               "stop_reason": stats.get("stop_reason"), "seconds": stats.get("seconds")}
    if "content_weight" in settings and summary["content"] is not None and summary["style"] is not None:
        summary["content_style"] = content_style(stats, settings)
    return summary


def content_style(stats: dict, settings: dict) -> float:
    """A frame's content + style loss, weighted with `settings`' weights: what a cold render and a
    chain are compared on (the temporal term and total variation left out)."""
    losses = stats["losses"]
    return settings["content_weight"] * losses["content"] + settings["style_weight"] * losses["style"]


def format_evaluation(result: dict) -> str:
    estimator = result["estimator"]
    lines = [
        f"frames {result['frames']} from source frame {result['start']} at {result['size'][0]}x{result['size'][1]}; "
        f"E_warp estimator {estimator}, floor carried along {result['carry_flow']}",
        f"E_warp ({estimator}) stylized   {result['stylized']:.4g}",
        f"E_warp ({estimator}) source     {result['source']:.4g}   (stylized is {result['ratio_to_source']:.2f}x)",
        f"E_warp ({estimator}) flow floor {result['flow_floor']:.4g}   (stylized is {result['ratio_to_floor']:.2f}x; "
        "mean over pairs ÷ mean per-pair floor)",
        f"structure {result['structure']:.3f}   drift {result['structure_drift']:.2f}x (last quarter ÷ first quarter)",
    ]
    lines += _baseline_lines(result.get("baseline"))
    lines += _per_frame_lines(result)
    return "\n".join(lines)


def _baseline_lines(baseline: dict | None) -> list[str]:
    if not baseline:
        return []
    lines = [f"cold baseline {baseline['workdir']}: structure {baseline['structure']:.3f}, "
             f"stylized is {baseline['structure_ratio']:.2f}x"]
    if "content_style_ratio" in baseline:
        lines.append(f"  content+style loss {baseline['content_style_ratio']:.2f}x the baseline's, "
                     f"evaluations {baseline['evaluations_ratio']:.2f}x")
    return lines


def _per_frame_lines(result: dict) -> list[str]:
    per_frame = result.get("per_frame") or {}
    structure = dict(zip(range(result["start"], result["start"] + result["frames"]), result["structure_per_frame"]))
    texture = dict(zip(structure, result["texture_energy_per_frame"]))
    lines = ["", f"{'frame':>6} {'structure':>9} {'texture':>9}"
             + (f" {'content':>9} {'style':>9} {'temporal':>9} {'evals':>6}  stopped" if per_frame else "")]
    for index in structure:
        line = f"{index:>6} {structure[index]:>9.3f} {texture[index]:>9.3g}"
        frame = per_frame.get(index)
        if frame:
            line += (f" {_number(frame['content'])} {_number(frame['style'])} {_number(frame['temporal'])} "
                     f"{frame['evaluations']:>6}  {frame['stop_reason']}")
        lines.append(line)
    return lines


def _number(value) -> str:
    return f"{value:>9.4g}" if value is not None else f"{'—':>9}"


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
