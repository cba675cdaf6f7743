"""Shows render progress: one tqdm bar with a whole-clip ETA, or log lines.

A frame loop's bar counts loss evaluations (it moves during a frame, and a cold frame's larger
budget does not skew the ETA); a farm driver's, which sees only finished frames, counts frames."""
from __future__ import annotations

import sys

from tqdm import tqdm

from .events import FrameDone, FrameRejected, Iterate, Progressed, Started


class ProgressReporter:
    """A render progress callback; `quiet` prints one line per frame, for logs."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar, self.reported = quiet, None, 0
        self.frames_total = self.frames_done = 0
        self.frame_evaluations = None  # set when the bar counts evaluations
        self.last_evaluations = 0  # the current frame's count so far (it restarts at each optimization)

    def __enter__(self) -> "ProgressReporter":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, event) -> None:
        if isinstance(event, Started):
            self._start(event)
        elif isinstance(event, Iterate) and self.bar is not None:
            self._iterated(event)
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
        self.frames_total, self.frames_done = event.total, event.done
        if event.evaluations is None:  # ETA counts only frames rendered now, not the ones found finished
            self.bar = tqdm(total=event.total, initial=event.done, unit="frame", dynamic_ncols=True, smoothing=0.1)
            return
        self.frame_evaluations = event.frame_evaluations
        self.bar = tqdm(total=event.evaluations, unit="eval", dynamic_ncols=True, smoothing=0.05, desc=self._frames())

    def _frames(self) -> str:
        return f"frame {self.frames_done}/{self.frames_total}"

    def _iterated(self, event: Iterate) -> None:
        if self.frame_evaluations is not None:
            step = event.evaluations - self.last_evaluations if event.evaluations >= self.last_evaluations else event.evaluations
            self.last_evaluations = event.evaluations
            self.bar.update(step)
            self.bar.total = max(self.bar.total, self.bar.n)  # a line search may end one past its budget
        self.bar.set_postfix_str(f"eval {event.evaluations}, loss {event.loss:.3g}", refresh=False)

    def _frame_done(self, event: FrameDone) -> None:
        self.frames_done += 1
        if self.bar is not None and self.frame_evaluations is not None:
            # What is left: every remaining frame at the warm budget (frames stop early, cuts start cold).
            self.last_evaluations = 0
            self.bar.total = self.bar.n + self.frame_evaluations * (self.frames_total - self.frames_done)
            self.bar.set_description_str(self._frames(), refresh=True)
        elif self.bar is not None:
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
