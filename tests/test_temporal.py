"""The temporal term at work, end to end: a real render of a clip with known motion."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline import images, metrics, render, video
from pipeline.config import Job, make_settings

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_the_temporal_term_lowers_e_warp_on_a_clip_with_known_motion(tmp_path):
    """A real render of a 5-frame pan (2 px a frame over a painting, 64x48), once with the
    temporal loss and once without: the same start images, only the term differs."""
    big = cv2.cvtColor(cv2.imread(str(SAMPLES / "kandinsky.jpg")), cv2.COLOR_BGR2RGB)
    big = cv2.resize(big, (104, 48), interpolation=cv2.INTER_AREA)
    for index in range(5):
        images.save_rgb(tmp_path / f"pan_{index:03d}.png", np.ascontiguousarray(big[:, 2 * index: 2 * index + 64]))
    clip = tmp_path / "pan.mp4"
    video.encode_video(str(tmp_path / "pan_%03d.png"), 0, 5, clip, video.Fraction(24), chroma="4:4:4")
    measured = {}
    for weight in (0.0, 200.0):
        settings = make_settings("default", {"size": 64, "first_frame_iterations": 10, "frame_iterations": 6,
                                             "temporal_weight": weight, "stop_window": 0})
        job_ = Job(clip, SAMPLES / "starry-night.jpg", settings, output=tmp_path / f"out{weight:g}.mp4")
        render.render(job_)
        frames = [images.load_rgb(p) for p in sorted((job_.workdir_path / "frames").glob("*.png"))]
        sources = list(video.read_frames(video.probe(clip), 0, 5, (64, 48)))
        measured[weight] = metrics.measure_clip(sources, frames).stylized.mean
    assert measured[200.0] < 0.8 * measured[0.0], measured
