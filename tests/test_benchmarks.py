"""The benchmarks' provenance line, and the clips they make."""
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import provenance  # noqa: E402


def test_provenance_names_the_commit_and_the_deciding_libraries():
    line = provenance()
    assert re.match(r"commit [0-9a-f]{7,}( \+changes)?; ", line), line
    assert re.search(r"tensorflow \d+\.\d+", line) and re.search(r"numpy \d+\.\d+", line)


def test_the_long_shot_clips_move_smoothly_and_come_back():
    from benchmarks.long_shots import pan_and_zoom, pingpong, sample_frames

    frames = sample_frames()
    shots = pingpong(frames, 144)
    assert len(shots) == 144 and all(a is not b for a, b in zip(shots, shots[1:]))  # no frame held at a turn
    assert shots[70] is frames[len(frames) - 1 - (70 - (len(frames) - 1))]  # on the way back
    views = pan_and_zoom(frames[0], 200, (80, 60))
    steps = [np.abs(a.astype(int) - b).mean() for a, b in zip(views, views[1:])]
    assert len(views) == 200 and views[0].shape == (60, 80, 3)
    assert max(steps) < 8 and np.abs(views[100].astype(int) - views[0]).mean() > 3 * max(steps)  # slow, and far
