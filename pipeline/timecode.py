"""SMPTE timecode of a clip's first frame, carried to the output: an edit's conform needs it.

"HH:MM:SS:FF" counts frames at the nominal rate (25, 30, 60 for 29.97/59.94, ...); with ';' before
the frames it is drop-frame: at 29.97 (59.94) frame labels 0-1 (0-3) are skipped at the start of
every minute except each tenth, so the labels keep pace with the clock.
"""
from __future__ import annotations

import re
from fractions import Fraction

_TIMECODE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")


def shifted(timecode: str, frames: int, fps: Fraction) -> str:
    """The timecode `frames` frames after `timecode` (the output's first frame when a render
    starts `frames` into the clip), in the same form (drop-frame stays drop-frame)."""
    hours, minutes, seconds, separator, frame = _parts(timecode)
    nominal = round(fps)
    drop = separator in ";,"
    count = ((hours * 60 + minutes) * 60 + seconds) * nominal + frame
    if drop:
        count -= _dropped_before(hours * 60 + minutes, nominal)
    return _label(count + frames, nominal, drop, separator)


def _parts(timecode: str) -> tuple[int, int, int, str, int]:
    match = _TIMECODE.match(timecode.strip())
    if not match:
        raise ValueError(f"not a timecode: {timecode!r}")
    hours, minutes, seconds, separator, frame = match.groups()
    return int(hours), int(minutes), int(seconds), separator, int(frame)


def _drop_per_minute(nominal: int) -> int:
    return 2 * round(nominal / 30)  # 2 labels at 29.97, 4 at 59.94


def _dropped_before(total_minutes: int, nominal: int) -> int:
    """Labels skipped before minute `total_minutes`: every minute but each tenth drops some."""
    return _drop_per_minute(nominal) * (total_minutes - total_minutes // 10)


def _label(count: int, nominal: int, drop: bool, separator: str) -> str:
    if drop:  # add back the labels skipped before this frame (SMPTE 12M)
        per_minute = nominal * 60 - _drop_per_minute(nominal)
        per_ten = nominal * 600 - 9 * _drop_per_minute(nominal)
        tens, rest = divmod(count, per_ten)
        skipped = 9 * _drop_per_minute(nominal) * tens
        if rest >= _drop_per_minute(nominal):
            skipped += _drop_per_minute(nominal) * ((rest - _drop_per_minute(nominal)) // per_minute)
        count += skipped
    frame = count % nominal
    seconds = count // nominal
    hours = seconds // 3600 % 24  # a day wraps, as a timecode does
    return f"{hours:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{separator}{frame:02d}"
