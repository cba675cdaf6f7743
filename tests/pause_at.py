"""Run cli.py, pausing at one instant so that a test can kill the process exactly there:

    python tests/pause_at.py POINT [cli.py arguments]

prints "test-pause: POINT" on stderr and sleeps at POINT, one of
    optimize:N      during frame N's optimization (after its first iteration)
    frame-write:N   frame N's PNG fully written under its temporary name, not yet renamed
    encode          the output video encoded under its partial name, not yet renamed
The faults are injected here, by wrapping the product's functions, never inside the product.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli  # noqa: E402
from pipeline import chain, events  # noqa: E402


def pause(point: str) -> None:
    print(f"test-pause: {point}", file=sys.stderr, flush=True)
    time.sleep(3600)


def pause_during_optimization(frame: int) -> None:
    """Wrap the frame loop's stylize_frame: frame `frame`'s first iteration pauses."""
    real_frames_with_history, real_stylize_frame = chain._frames_with_history, chain.stylize_frame
    current = {}

    def frames_with_history(*args, **kwargs):
        for index, source, history in real_frames_with_history(*args, **kwargs):
            current["index"] = index
            yield index, source, history

    def stylize_frame(job, stylizer, source, history, notify):
        def on_event(event):
            notify(event)
            if isinstance(event, events.Iterate) and current.get("index") == frame:
                pause(f"optimize:{frame}")
        return real_stylize_frame(job, stylizer, source, history, on_event)

    chain._frames_with_history, chain.stylize_frame = frames_with_history, stylize_frame


def pause_before_rename(point: str, is_target) -> None:
    """Wrap os.replace: the rename that puts a target in place pauses first (its temporary is complete)."""
    real_replace = os.replace

    def replace(source, destination, **kwargs):
        if is_target(Path(destination)):
            pause(point)
        return real_replace(source, destination, **kwargs)

    os.replace = replace


def arm(point: str) -> None:
    kind, _, frame = point.partition(":")
    if kind == "optimize":
        pause_during_optimization(int(frame))
    elif kind == "frame-write":
        pause_before_rename(point, lambda path: path.name == f"{int(frame):06d}.png" and path.parent.name == "frames")
    elif kind == "encode":
        pause_before_rename(point, lambda path: path.suffix in (".mp4", ".mov", ".mkv") and ".partial" not in path.name)
    else:
        raise SystemExit(f"pause_at.py: unknown point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
