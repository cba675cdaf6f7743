"""`cli.py eval`: how stable a stylized clip is, and what each frame's optimization reached.

E_warp comes from metrics; per-frame losses and stop reasons from a render's work directory
when STYLIZED is one (or its frames folder), since only the renderer knows them.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import metrics
from .workdir import WorkDir


def evaluate(source: Path, stylized: Path, start: int = 0, method: str = "dis-medium") -> dict:
    workdir = _workdir_of(stylized)
    frames = workdir.frame_path(0).parent if workdir else stylized
    result = metrics.evaluate_clip(source, frames, method=method, source_start=start)
    if workdir is not None:
        indices = sorted(int(p.stem) for p in frames.glob("*.png"))
        result["per_frame"] = {index: _frame_summary(stats) for index, stats in workdir.read_stats(indices).items()}
    return result


def _workdir_of(stylized: Path) -> WorkDir | None:
    """The work directory STYLIZED is, or whose frames folder it is."""
    for candidate in (WorkDir(stylized), WorkDir(stylized.parent)):
        if candidate.manifest_path.is_file() and candidate.frame_path(0).parent.is_dir():
            return candidate
    return None


def _frame_summary(stats: dict) -> dict:
    losses = stats["losses"]
    return {"content": losses.get("content"), "style": losses.get("style"), "temporal": losses.get("temporal"),
            "total": losses.get("total"), "evaluations": stats.get("evaluations"),
            "stop_reason": stats.get("stop_reason"), "seconds": stats.get("seconds")}


def format_evaluation(result: dict) -> str:
    lines = [
        f"frames {result['frames']} at {result['size'][0]}x{result['size'][1]}, flow {result['method']}",
        f"E_warp stylized   {result['stylized']:.4g}",
        f"E_warp source     {result['source']:.4g}   (stylized is {result['ratio_to_source']:.2f}x)",
        f"E_warp flow floor {result['flow_floor']:.4g}   (stylized is {result['ratio_to_floor']:.2f}x)",
    ]
    per_frame = result.get("per_frame")
    if per_frame:
        lines += ["", f"{'frame':>6} {'content':>9} {'style':>9} {'temporal':>9} {'evals':>6}  stopped"]
        for index, frame in sorted(per_frame.items()):
            lines.append(f"{index:>6} {frame['content']:>9.4g} {frame['style']:>9.4g} {frame['temporal']:>9.4g} "
                         f"{frame['evaluations']:>6}  {frame['stop_reason']}")
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
