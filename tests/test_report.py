"""report.html and the preview aids, on a real 3-frame render of the sample at a tiny size."""
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_CLIP, SAMPLE_STYLE

from pipeline import compare, planning, render, video
from pipeline.config import Job, make_settings
from pipeline.images import load_rgb
from pipeline.report import gather, write_report

START, END = 2, 5
FAST = {"size": 64, "first_frame_iterations": 4, "frame_iterations": 2}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Frames 2-4 of the sample rendered once through render.render, with its plan."""
    out = tmp_path_factory.mktemp("report") / "clip.mp4"
    job = Job(video=SAMPLE_CLIP, style=SAMPLE_STYLE, settings=make_settings("default", FAST),
              output=out, start=START, end=END)
    render.render(job)
    return job, planning.plan(job)


@pytest.fixture(scope="module")
def report_html(rendered):
    job, plan = rendered
    path = write_report(job.workdir_path, job.video, plan.start, plan.end, plan.size, job.output_path)
    assert path == job.workdir_path / "report.html"
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report_html):
    assert "data:image/png;base64," in report_html
    sources = re.findall(r'src="([^"]*)"', report_html)
    assert sources and all(source.startswith("data:image/") for source in sources)
    assert not re.search(r'href="(?!#)', report_html)  # no stylesheet or link to another file


def test_report_shows_weights_settings_and_progress(rendered, report_html):
    job, _ = rendered
    identity = json.loads((job.workdir_path / "manifest.json").read_text())["identity"]
    assert identity["weights"]["sha256"] in report_html
    for name in identity["settings"]:
        assert f"<th>{name}</th>" in report_html
    assert "3 / 3" in report_html


def test_report_has_one_image_per_plot_and_the_contact_sheet(report_html):
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', report_html)
    assert alts.count("contact sheet") == 1
    plots = re.findall(r'<img class="plot"', report_html)
    assert len(plots) == 5  # losses, evaluations, seconds, E_warp with floor, structure with texture
    assert len(re.findall(r"data:image/png;base64,", report_html)) == len(plots)


def test_report_headlines_name_the_estimator_and_show_structure(rendered, report_html):
    job, plan = rendered
    cards = re.search(r'<section class="cards">(.*?)</section>', report_html, re.S).group(1)
    assert "E_warp ÷ flow floor" in cards and "measured with deepflow" in cards
    assert re.search(r'<div class="value">\d+\.\d\d×</div>', cards)  # the ratio itself, not a dash
    assert "Structure" in cards and "drift" in cards


def test_report_measures_every_finished_frame_with_the_evaluation_flow(rendered):
    job, plan = rendered
    data = gather(job.workdir_path, job.video, plan.start, plan.end, plan.size, job.output_path)
    measures = data.measures
    assert (measures.estimator, measures.carry_flow) == ("deepflow", job.settings.flow)
    assert measures.pairs == [START, START + 1] and measures.frames == [START, START + 1, START + 2]
    assert len(measures.floor) == 2 and all(value > 0 for value in measures.floor + measures.stylized)
    assert math.isfinite(measures.ratio_to_floor)
    assert all(-1 <= value <= 1 for value in measures.structure) and all(value > 0 for value in measures.texture)


def test_report_headline_numbers_are_the_measured_ones(rendered, report_html):
    """The cards show the numbers eval computes on the same frames, not just a well-formed page."""
    from pipeline import metrics

    job, plan = rendered
    sources = list(video.read_frames(plan.info, plan.start, plan.end, plan.size))
    frames = [load_rgb(job.workdir_path / "frames" / f"{i:06d}.png") for i in range(plan.start, plan.end)]
    measured = metrics.measure_clip(sources, frames, carry_flow=job.settings.flow)
    cards = re.search(r'<section class="cards">(.*?)</section>', report_html, re.S).group(1)
    values = re.findall(r'<div class="value">([^<]*)</div>', cards)
    assert f"{measured.ratio_to_floor:.2f}×" in values
    assert f"{measured.structure_mean:.2f}" in values


def test_report_of_a_partial_render_is_written(rendered, tmp_path):
    job, plan = rendered
    partial = tmp_path / "partial.work"
    (partial / "frames").mkdir(parents=True)
    (partial / "frames" / f"{START:06d}.png").write_bytes(job.workdir_path.joinpath("frames", f"{START:06d}.png").read_bytes())
    html = write_report(partial, job.video, plan.start, plan.end, plan.size).read_text(encoding="utf-8")
    assert "1 / 3" in html and "contact sheet" in html


def test_contact_sheet_shape_follows_the_grid():
    height, width, gap = 10, 16, compare.SHEET_GAP
    pairs = [(i, np.full((20, 32, 3), i, np.uint8), np.full((height, width, 3), 200, np.uint8)) for i in range(5)]
    sheet = compare.contact_sheet(pairs, columns=2)
    assert sheet.shape == (3 * height + 4 * gap, 2 * (2 * width) + 3 * gap, 3)
    assert sheet.dtype == np.uint8


def test_pick_every_keeps_first_and_last():
    assert compare.pick_every([3, 4, 5, 6, 7, 8], 4) == [3, 7, 8]
    assert compare.pick_every([3, 4, 5], 1) == [3, 4, 5]


def test_preview_path_sits_beside_the_output():
    assert compare.preview_path(Path("out/clip.mp4"), ".compare.mp4") == Path("out/clip.compare.mp4")
    assert compare.preview_path(Path("out/shot.%04d.png"), ".sheet.png") == Path("out/shot.sheet.png")


def test_write_contact_sheet(rendered, tmp_path):
    job, plan = rendered
    path = compare.write_contact_sheet(job.workdir_path, plan.info, plan.size, plan.start, plan.end, 2, tmp_path / "s.png")
    width, height = plan.size
    gap = compare.SHEET_GAP
    assert load_rgb(path).shape == (height + 2 * gap, 2 * (2 * width) + 3 * gap, 3)  # frames 2 and 4


def test_side_by_side_video(rendered, tmp_path):
    job, plan = rendered
    out = compare.write_side_by_side(job.workdir_path, plan.info, plan.size, plan.start, plan.end,
                                     tmp_path / "clip.compare.mp4", audio_from=job.video)
    info = video.probe(out)
    width, height = plan.size
    assert (info.frame_count, info.width, info.height) == (END - START, 2 * width, height)
    assert abs(info.fps - Fraction(plan.info.fps)) < Fraction(1, 1000)
    assert info.has_audio
    assert not list(Path(job.workdir_path).glob(".compare-*"))  # the composed frames are cleaned up
