"""The progress bar: an ETA from loss evaluations, moving during a frame."""
import io
from types import SimpleNamespace

from pipeline.events import FrameDone, Iterate, Progressed, Started
from pipeline.progress import ProgressReporter


def iterate(reporter, evaluations):
    for count in range(1, evaluations + 1):
        reporter(Iterate(count, 1.0 / count))


def test_the_bar_counts_evaluations_and_re_estimates_after_each_frame(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with ProgressReporter() as reporter:
        reporter(Started(total=4, done=1, evaluations=100 + 2 * 20, frame_evaluations=20))
        bar = reporter.bar
        assert (bar.total, bar.unit, bar.desc) == (140, "eval", "frame 1/4")
        iterate(reporter, 37)  # the cold frame, stopped early
        assert bar.n == 37  # the bar moved during the frame
        reporter(FrameDone(1, SimpleNamespace()))
        assert bar.total == 37 + 2 * 20 and bar.desc == "frame 2/4"
        iterate(reporter, 16)  # a warm frame: its count restarts at 1
        reporter(FrameDone(2, SimpleNamespace()))
        assert bar.n == 53 and bar.total == 53 + 20


def test_a_farm_driver_bar_counts_frames(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with ProgressReporter() as reporter:
        reporter(Started(total=9, done=2))
        reporter(Progressed(5))
        assert (reporter.bar.unit, reporter.bar.n, reporter.bar.total) == ("frame", 5, 9)


def test_a_render_budgets_its_cold_frame_and_its_warm_frames(tmp_path):
    from conftest import SAMPLE_CLIP, SAMPLE_STYLE

    from pipeline import render
    from pipeline.config import Job, make_settings

    events = []
    settings = make_settings("default", {"size": 64, "first_frame_iterations": 4, "frame_iterations": 2})
    job = Job(SAMPLE_CLIP, SAMPLE_STYLE, settings, output=tmp_path / "o.mp4", end=3)
    render.render(job, on_progress=events.append)
    started = [e for e in events if isinstance(e, Started)][0]
    assert (started.total, started.done, started.evaluations, started.frame_evaluations) == (3, 0, 4 + 2 * 2, 2)
    render.render(job, on_progress=events.append)  # all done: nothing budgeted
    assert [e for e in events if isinstance(e, Started)][-1].evaluations == 0
