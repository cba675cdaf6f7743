"""Shows render progress: one tqdm bar over all frames with a whole-clip ETA, or log lines."""
from __future__ import annotations

import sys

from tqdm import tqdm

from .events import FrameDone, FrameRejected, Iterate, Progressed, Started


class ProgressReporter:
    """A render progress callback; `quiet` prints one line per frame, for logs."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar, self.reported = quiet, None, 0

    def __enter__(self) -> "ProgressReporter":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, event) -> None:
        if isinstance(event, Started):
            self._start(event)
        elif isinstance(event, Iterate) and self.bar is not None:
            self.bar.set_postfix_str(f"eval {event.evaluations}, loss {event.loss:.3g}", refresh=False)
        elif isinstance(event, FrameDone):
            self._frame_done(event)
        elif isinstance(event, Progressed):
            self._progressed(event)
        elif isinstance(event, FrameRejected):
            self._say(f"frame {event.index}: {event.reason}; rendering it again")

    def _say(self, line: str) -> None:
        """A line above the bar (or in the log), without breaking the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _start(self, event: Started) -> None:
        if self.quiet:
            print(f"rendering {event.total} frames, {event.done} already done", file=sys.stderr, flush=True)
            return
        # ETA counts only frames rendered now, not the ones found finished on disk.
        self.bar = tqdm(total=event.total, initial=event.done, unit="frame", dynamic_ncols=True, smoothing=0.1)

    def _frame_done(self, event: FrameDone) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.quiet:
            r = event.result
            print(f"frame {event.index}: loss {r.losses['total']:.4g}, {r.evaluations} evaluations, "
                  f"{r.seconds:.1f} s, {r.stop_reason}" + (f"; {r.start}" if r.start.startswith("cold:") else ""),
                  file=sys.stderr, flush=True)

    def _progressed(self, event: Progressed) -> None:
        if self.bar is not None and event.done > self.bar.n:
            self.bar.update(event.done - self.bar.n)
        elif self.quiet and event.done > self.reported:
            print(f"{event.done} frames finished", file=sys.stderr, flush=True)
        self.reported = max(self.reported, event.done)
