"""Timecode: arithmetic (drop-frame included) and a render that keeps its source's."""
from fractions import Fraction

import pytest

from pipeline.timecode import shifted

NTSC, NTSC60 = Fraction(30000, 1001), Fraction(60000, 1001)


@pytest.mark.parametrize("start, frames, fps, expected", [
    ("01:00:10:05", 3, Fraction(25), "01:00:10:08"),
    ("00:00:59:29", 1, Fraction(30), "00:01:00:00"),  # non-drop at 30: no label skipped
    ("00:00:59;29", 1, NTSC, "00:01:00;02"),  # drop-frame: ;00 and ;01 skipped at the minute
    ("00:09:59;29", 1, NTSC, "00:10:00;00"),  # ... but not at each tenth minute
    ("00:00:00;00", 17982, NTSC, "00:10:00;00"),  # 10 minutes of 29.97 fps in drop-frame labels
    ("00:00:59;59", 1, NTSC60, "00:01:00;04"),  # 59.94 drops four
    ("23:59:59:24", 1, Fraction(25), "00:00:00:00"),  # a day wraps
])
def test_shifted(start, frames, fps, expected):
    assert shifted(start, frames, fps) == expected


def test_not_a_timecode_is_refused():
    with pytest.raises(ValueError, match="not a timecode"):
        shifted("1:00:00", 1, Fraction(25))


def test_a_render_starting_into_a_clip_keeps_its_timecode(tmp_path):
    import subprocess

    import imageio_ffmpeg
    from conftest import SAMPLE_STYLE

    from pipeline import render, video
    from pipeline.config import Job, make_settings

    clip = tmp_path / "tc.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=25:d=0.4", "-timecode", "01:00:10:05", "-c:v", "libx264", str(clip)],
                   check=True)
    assert video.probe(clip).timecode == "01:00:10:05"
    settings = make_settings("default", {"size": 64, "first_frame_iterations": 2, "frame_iterations": 1})
    output = render.render(Job(clip, SAMPLE_STYLE, settings, output=tmp_path / "out.mp4", start=3, end=5))
    assert video.probe(output).timecode == "01:00:10:08"  # the output's first frame is source frame 3
