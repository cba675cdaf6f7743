"""What a render tells whoever shows its progress. No TensorFlow here: a progress bar, a job
log or a farm driver can listen without loading the optimizer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .stylize import FrameResult


@dataclass(frozen=True)
class Started:
    """Rendering begins: `total` frames in the range, `done` of them already finished. A frame
    loop also says how many loss evaluations it budgets for the rest (`evaluations`) and for a
    warm frame (`frame_evaluations`): a cold frame costs several warm ones, so an ETA counts
    evaluations, not frames."""

    total: int
    done: int
    evaluations: int | None = None
    frame_evaluations: int | None = None


@dataclass(frozen=True)
class Progressed:
    """Frames finished so far, counted by a driver that does not render them itself (Ray)."""

    done: int


@dataclass(frozen=True)
class Iterate:
    """Progress of one optimizer iteration within a frame."""

    evaluations: int
    loss: float


@dataclass(frozen=True)
class FrameRejected:
    """A finished frame failed its check and will be rendered again."""

    index: int
    reason: str


@dataclass(frozen=True)
class FrameDone:
    """A frame has just been rendered (frames found on disk are counted in `Started.done`)."""

    index: int
    result: "FrameResult"


Event = Started | Progressed | Iterate | FrameRejected | FrameDone
ProgressCallback = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The callback of a caller that shows no progress."""
