"""report.html in a work directory: what a render did, frame by frame, in one self-contained file.

Everything comes from what is on disk (manifest.json, stats/*.json, frames/*.png and the source
clip), so the report can be regenerated at any time, also for a render that is still running or
was stopped half way. Images are inlined as base64 data URIs: the file can be mailed or archived
alone. Plots use matplotlib's Agg canvas directly (no pyplot), so no global backend is touched.
"""
from __future__ import annotations

import base64
import html
import io
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pipeline import compare, files, images, metrics, video
from pipeline.evaluate import render_settings
from pipeline.workdir import FinalFrames, WorkDir

REPORT_NAME = "report.html"
SHEET_CELLS, SHEET_MIN_CELLS, SHEET_MAX_CELLS = 10, 8, 12  # the range at a glance, not a wall of frames
SHEET_COLUMNS = 3
SHEET_THUMBNAIL = 320  # long side of each half: sharp at the report's width on HiDPI screens
SHEET_BACKGROUND = (255, 255, 255)  # the page's own panel colour: a short last row just ends
STYLE_THUMBNAIL = 220
TERMS = ("content", "style", "tv", "temporal")
TERM_COLORS = {"content": "#1f77b4", "style": "#9467bd", "tv": "#2ca02c", "temporal": "#ff7f0e", "total": "#222222"}
STOP_COLORS = {"converged": "#2ca02c", "budget": "#f0a020"}
OTHER_STOP_COLOR = "#d62728"
PLOT_DPI = 144


# ---------------------------------------------------------------- entry point


def write_report(
    workdir: Path, video_path: Path, start: int, end: int, size: tuple[int, int], output_path: Path | None = None
) -> Path:
    """Write `workdir/report.html` for frames [start, end) of `video_path`; returns its path."""
    workdir = Path(workdir)
    data = gather(workdir, Path(video_path), start, end, tuple(size), output_path)
    path = workdir / REPORT_NAME
    # A browser reloading the report mid-write sees the old one or the new one, never half.
    files.write_atomically(path, render_html(data).encode("utf-8"))
    return path


# ---------------------------------------------------------------- what is on disk


@dataclass
class Measures:
    """metrics.measure_clip over the finished frames, run by run: per pair (t, t+1) and per frame."""

    estimator: str  # the flow that measured E_warp
    carry_flow: str  # the render's flow, that carried each frame one step for the floor
    pairs: list[int] = field(default_factory=list)  # t of each pair
    stylized: list[float] = field(default_factory=list)
    source: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    structure: list[float] = field(default_factory=list)
    texture: list[float] = field(default_factory=list)

    @property
    def ratio_to_floor(self) -> float:
        """Mean E_warp ÷ mean per-pair floor, as metrics.ClipMeasures defines it."""
        return metrics.ratio(metrics.defined_mean(self.stylized), metrics.defined_mean(self.floor))


@dataclass
class ReportData:
    workdir: Path
    video_path: Path
    output_path: Path | None
    start: int
    end: int
    size: tuple[int, int]
    info: video.VideoInfo
    manifest: dict
    done: list[int]
    stats: dict[int, dict]
    sheet_every: int
    sheet: np.ndarray | None
    measures: Measures


def gather(workdir: Path, video_path: Path, start: int, end: int, size: tuple[int, int], output_path: Path | None) -> ReportData:
    info = video.probe(video_path)
    work = WorkDir(workdir)
    done = work.finished(start, end)
    every = sheet_every(len(done))
    sheet = None
    if done:
        pairs = compare.read_pairs(workdir, info, size, compare.pick_every(done, every))
        sheet = compare.contact_sheet(pairs, SHEET_COLUMNS, SHEET_THUMBNAIL, SHEET_BACKGROUND)
    manifest = work.read_manifest() or {}
    carry_flow = render_settings(manifest).get("flow")
    return ReportData(workdir, video_path, output_path, start, end, size, info, manifest, done,
                      work.read_stats(done), every, sheet, measure_runs(work, info, size, done, carry_flow))


def sheet_every(count: int) -> int:
    """Stride for 8-12 cells (the last frame included), preferring full rows of SHEET_COLUMNS."""
    def cells(every: int) -> int:
        return len(compare.pick_every(range(count), every))

    def badness(every: int) -> tuple[int, bool, int]:
        return (max(0, SHEET_MIN_CELLS - cells(every), cells(every) - SHEET_MAX_CELLS),
                cells(every) % SHEET_COLUMNS != 0, abs(cells(every) - SHEET_CELLS))
    return min(range(1, max(count, 1) + 1), key=badness) if count > SHEET_MAX_CELLS else 1


def consecutive_runs(indices: Sequence[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 6] -> [[0, 1, 2], [5, 6]]: E_warp is only defined between neighbours."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def measure_runs(work: WorkDir, info: video.VideoInfo, size: tuple[int, int], done: Sequence[int],
                 carry_flow: str | None) -> Measures:
    """metrics.measure_clip of each contiguous run of finished frames (E_warp is only defined
    between neighbours), so that a partial or farm-rendered work directory can be measured too."""
    measures = Measures(metrics.EVALUATION_FLOW, carry_flow or metrics.default_render_flow())
    for run in consecutive_runs(done):
        sources = video.read_frames(info, run[0], run[-1] + 1, size)
        final = FinalFrames(work)  # what is encoded: stitched frames at chunk borders
        clip = metrics.measure_clip(sources, (final.load(index) for index in run), measures.estimator,
                                    measures.carry_flow)
        measures.pairs.extend(run[:-1])
        measures.stylized.extend(clip.stylized.per_pair)
        measures.source.extend(clip.source.per_pair)
        measures.floor.extend(clip.floor.per_pair)
        measures.frames.extend(run)
        measures.structure.extend(clip.structure)
        measures.texture.extend(clip.texture)
    return measures


# ---------------------------------------------------------------- plots


def _new_figure(height: float = 3.2, columns: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=(10, height), dpi=PLOT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, columns, i + 1) for i in range(columns)]
    for ax in axes:
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("source frame")
    return figure, axes


def _legend_below(ax, columns: int = 4, handles: list | None = None) -> None:
    # Below the axes, never over the data, and every plot keeps the same width so x axes line up.
    ax.legend(handles=handles, fontsize=9, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=columns)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI, facecolor="white")
    return buffer.getvalue()


def _broken_at_gaps(frames: Sequence[int], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """A NaN point between non-neighbouring frames: a line must not bridge frames never rendered."""
    xs: list[float] = []
    ys: list[float] = []
    for position, (frame, value) in enumerate(zip(frames, values)):
        if position and frame != frames[position - 1] + 1:
            xs.append(frame - 0.5)
            ys.append(math.nan)
        xs.append(frame)
        ys.append(value)
    return xs, ys


def _line(ax, frames: Sequence[int], values: Sequence[float], **style) -> None:
    ax.plot(*_broken_at_gaps(frames, _positive(values)), **style)


def _positive(values: Iterable[float]) -> list[float]:
    # A log axis cannot show 0 (the first frame has no temporal term): leave a gap instead.
    return [v if v is not None and v > 0 else math.nan for v in values]


def plot_losses(stats: dict[int, dict], settings: dict) -> bytes:
    frames = sorted(stats)
    losses = {name: [stats[i]["losses"].get(name, math.nan) for i in frames] for name in (*TERMS, "total")}
    figure, (weighted, unweighted) = _new_figure(3.4, columns=2)
    _line(weighted, frames, losses["total"], color=TERM_COLORS["total"], linewidth=2.2, marker="o",
                  markersize=3, label="total")
    for name in TERMS:
        weight = float(settings.get(f"{name}_weight", math.nan))
        contribution = [weight * v for v in losses[name]]
        _line(weighted, frames, contribution, color=TERM_COLORS[name], linewidth=1.4, marker="o",
                      markersize=2.5, label=f"{name} × {weight:g}")
        _line(unweighted, frames, losses[name], color=TERM_COLORS[name], linewidth=1.4, marker="o",
                        markersize=2.5, label=name)
    weighted.set_title("Total and weighted terms (weight × term)", fontsize=10, loc="left")
    unweighted.set_title("Unweighted terms (each normalized to O(1))", fontsize=10, loc="left")
    for ax in (weighted, unweighted):
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
        _legend_below(ax, columns=3)
    return _png(figure)


def plot_evaluations(stats: dict[int, dict], settings: dict) -> bytes:
    frames = sorted(stats)
    figure, (ax,) = _new_figure(2.8)
    reasons = [stats[i].get("stop_reason", "?") for i in frames]
    colors = [STOP_COLORS.get(reason, OTHER_STOP_COLOR) for reason in reasons]
    ax.bar(frames, [stats[i].get("evaluations", 0) for i in frames], color=colors, width=0.8)
    handles = [Patch(color=STOP_COLORS.get(reason, OTHER_STOP_COLOR), label=f"stopped: {_short(reason)}")
               for reason in dict.fromkeys(reasons)]  # one entry per reason, in order of appearance
    for key, style in (("first_frame_iterations", ":"), ("frame_iterations", "--")):
        if key in settings:
            ax.axhline(settings[key], color="#777777", linestyle=style, linewidth=1,
                       label=f"{key.replace('_', ' ')} budget ({settings[key]})")
    handles += ax.get_legend_handles_labels()[0]
    ax.margins(x=0.01)
    ax.set_ylabel("loss evaluations")
    ax.set_title("Loss evaluations per frame, coloured by why the optimizer stopped", fontsize=10, loc="left")
    _legend_below(ax, handles=handles)
    return _png(figure)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_seconds(stats: dict[int, dict]) -> bytes:
    frames = sorted(stats)
    seconds = [stats[i].get("seconds", math.nan) for i in frames]
    figure, (ax,) = _new_figure(2.6)
    ax.bar(frames, seconds, color="#4c72b0", width=0.8)
    mean = float(np.nanmean(seconds))
    ax.axhline(mean, color="#c44e52", linestyle="--", linewidth=1.2, label=f"mean {mean:.2f} s")
    ax.margins(x=0.01)
    ax.set_ylabel("seconds")
    ax.set_title("Wall-clock time per frame (a process's first frame also builds the loss graph)",
                 fontsize=10, loc="left")
    _legend_below(ax)
    return _png(figure)


def plot_warp(measures: Measures) -> bytes:
    figure, (ax,) = _new_figure(3.0)
    mean = metrics.defined_mean
    _line(ax, measures.pairs, measures.stylized, color="#c44e52", linewidth=2, marker="o", markersize=3,
          label=f"stylized (mean {_sci(mean(measures.stylized))})")
    _line(ax, measures.pairs, measures.floor, color="#4c72b0", linewidth=1.6, marker="o", markersize=2.5,
          label=f"flow floor of the pair (mean {_sci(mean(measures.floor))})")
    _line(ax, measures.pairs, measures.source, color="#888888", linewidth=1.2, linestyle="--",
          label=f"source (mean {_sci(mean(measures.source))})")
    ax.set_yscale("log")
    ax.set_xlabel("pair (t, t+1), by t")
    ax.set_ylabel("E_warp (log scale)")
    ax.set_title(f"Temporal stability: E_warp per consecutive pair, measured with {measures.estimator} flow; "
                 "lower is steadier", fontsize=10, loc="left")
    _legend_below(ax, columns=3)
    return _png(figure)


def plot_structure(measures: Measures) -> bytes:
    figure, (fidelity, texture) = _new_figure(3.0, columns=2)
    fidelity.plot(*_broken_at_gaps(measures.frames, measures.structure), color="#2ca02c", linewidth=2, marker="o",
                  markersize=3, label=f"structure (mean {metrics.defined_mean(measures.structure):.3f})")
    fidelity.set_ylim(0, 1)
    fidelity.set_ylabel("structure (1 = source's edges)")
    fidelity.set_title("Structure per frame: higher keeps more of the content", fontsize=10, loc="left")
    _line(texture, measures.frames, measures.texture, color="#8c564b", linewidth=1.6, marker="o", markersize=3,
          label="variance of the Laplacian")
    texture.set_yscale("log")
    texture.set_ylabel("texture energy (log scale)")
    texture.set_title("Texture energy per frame: falls where frames blur", fontsize=10, loc="left")
    for ax in (fidelity, texture):
        _legend_below(ax, columns=1)
    return _png(figure)


# ---------------------------------------------------------------- html


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _jpeg_uri(rgb: np.ndarray, quality: int = 92) -> str:
    # JPEG for photographs: a contact sheet as PNG would weigh several MB in the report.
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG for the report")
    return _data_uri(encoded.tobytes(), "image/jpeg")


def _img(uri: str, alt: str, css_class: str = "") -> str:
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="{uri}">'


def _sci(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.2e}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def _styles(manifest: dict) -> list[tuple[str, float]]:
    """(path, weight) of every painting of the render's style, as the manifest last saw them."""
    blend = manifest.get("files", {}).get("styles")
    if blend:
        return [(str(s.get("path", "?")), float(s.get("weight", 0))) for s in blend]
    return [(_file(manifest, "style"), 1.0)]


def _styles_html(manifest: dict) -> str:
    shown = []
    for path, weight in _styles(manifest):
        share = "" if weight == 1 else f' <span class="muted">weight {weight:.2f}</span>'
        shown.append(f"{html.escape(path)}{share}<div>{_style_thumbnail(path)}</div>")
    return "".join(shown)


def _style_thumbnail(path_text: str) -> str:
    path = Path(path_text)
    if not path_text or not path.is_file():
        return '<span class="muted">(style image no longer at this path)</span>'
    rgb = images.load_rgb(path)
    scale = min(1.0, STYLE_THUMBNAIL / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return _img(_jpeg_uri(rgb), "style image", "style")


def _rows(pairs: Iterable[tuple[str, str]]) -> str:
    """Table rows; values are trusted HTML, keys are escaped."""
    return "".join(f"<tr><th>{html.escape(key)}</th><td>{value}</td></tr>" for key, value in pairs)


def _setting_value(value) -> str:
    return html.escape(", ".join(map(str, value)) if isinstance(value, list) else str(value))


def _card(label: str, value: str, note: str = "") -> str:
    note_html = f'<div class="note">{note}</div>' if note else ""
    return f'<div class="card"><div class="label">{html.escape(label)}</div><div class="value">{value}</div>{note_html}</div>'


def _summary_cards(data: ReportData) -> str:
    total = data.end - data.start
    seconds = [s.get("seconds", 0.0) for s in data.stats.values()]
    done_share = len(data.done) / total if total else 0.0
    progress = f'<div class="bar"><div style="width:{100 * done_share:.1f}%"></div></div>'
    measures = data.measures
    stylized = metrics.defined_mean(measures.stylized)
    ratio = _ratio(stylized, metrics.defined_mean(measures.floor))
    structure = metrics.defined_mean(measures.structure)
    return '<section class="cards">' + "".join([
        _card("Frames done", f"{len(data.done)} / {total}", progress),
        _card("Render time", _duration(sum(seconds)) if seconds else "—", "sum over finished frames"),
        _card("Per frame", f"{np.mean(seconds):.2f} s" if seconds else "—", "mean wall-clock"),
        _card("E_warp ÷ flow floor", ratio, "needs two neighbouring frames" if ratio == "—" else
              f"E_warp {_sci(stylized)} measured with {html.escape(measures.estimator)}; floor: each frame carried "
              f"one step along {html.escape(measures.carry_flow)}"),
        _card("Structure", "—" if math.isnan(structure) else f"{structure:.2f}",
              f"drift {_times(metrics.drift(measures.structure))} (last quarter ÷ first); 1 = the source's edges"),
        _card("E_warp ÷ source's", _ratio(stylized, metrics.defined_mean(measures.source)),
              "context, not a target: texture costs more under flow error"),
    ]) + "</section>"


def _files_table(data: ReportData) -> str:
    info, manifest = data.info, data.manifest
    output = data.output_path
    output_html = "—" if output is None else html.escape(str(output)) + ("" if Path(output).exists() else
                                                                         ' <span class="muted">(not written yet)</span>')
    weights_sha256 = manifest.get("identity", {}).get("weights", {}).get("sha256", "?")
    return _rows([
        ("Input", f"{html.escape(str(data.video_path))}<div class=\"muted\">{_clip_summary(info)}</div>"),
        ("Range", f"frames {data.start}–{data.end - 1} ({data.end - data.start} frames)"),
        ("Style", _styles_html(manifest)),
        ("Output", output_html),
        ("Frame size", f"{data.size[0]}×{data.size[1]}"),
        ("Work directory", html.escape(str(data.workdir))),
        ("Weights", html.escape(_file(manifest, "weights"))),
        ("Weights sha256", f"<code>{html.escape(str(weights_sha256))}</code>"),
    ])


def _file(manifest: dict, name: str, missing: str = "?") -> str:
    """Where the render last saw its video, style or weights file."""
    return str(manifest.get("files", {}).get(name, missing))


def _clip_summary(info: video.VideoInfo) -> str:
    sound = "with sound" if info.has_audio else "no sound"
    return f"{info.width}×{info.height}, {float(info.fps):.3f} fps, {info.frame_count} frames, {sound}"


def _settings_table(manifest: dict) -> str:
    settings = render_settings(manifest)
    if not settings:
        return '<p class="muted">No manifest.json settings found.</p>'
    return f"<table class=\"settings\">{_rows((name, _setting_value(v)) for name, v in settings.items())}</table>"


def _ratio(numerator: float, denominator: float) -> str:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return "—"
    return _times(numerator / denominator)


def _times(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def _warp_table(measures: Measures) -> str:
    mean = metrics.defined_mean
    stylized, source, floor = mean(measures.stylized), mean(measures.source), mean(measures.floor)
    return ("<table class=\"warp\"><tr><th></th><th>mean E_warp</th><th>stylized ÷ this</th></tr>"
            f"<tr><th>stylized</th><td>{_sci(stylized)}</td><td></td></tr>"
            f"<tr><th>flow floor</th><td>{_sci(floor)}</td><td>{_ratio(stylized, floor)}</td></tr>"
            f"<tr><th>source</th><td>{_sci(source)}</td><td>{_ratio(stylized, source)}</td></tr></table>"
            f'<p class="muted">{len(measures.pairs)} pairs; E_warp (Lai et al. 2018) measured with '
            f"<b>{html.escape(measures.estimator)}</b> flow on the source frames, independent of the render's "
            f"{html.escape(measures.carry_flow)}. The flow floor of a pair carries stylized frame t one step along "
            f"the render's {html.escape(measures.carry_flow)} flow and measures that pair the same way: what the warm "
            "start alone would show. Stylized ÷ floor is a ratio of the means; below 1× read it with the texture "
            "energy, since a chain that blurs flickers less.</p>")


def _figure(png: bytes, title: str) -> str:
    return f'<figure>{_img(_data_uri(png, "image/png"), title, "plot")}</figure>'


def _optimization_section(data: ReportData) -> str:
    if not data.stats:
        return '<section><h2>Optimization per frame</h2><p class="muted">No finished frames yet.</p></section>'
    settings = render_settings(data.manifest)
    figures = (_figure(plot_losses(data.stats, settings), "loss per frame")
               + _figure(plot_evaluations(data.stats, settings), "loss evaluations and stop reason per frame")
               + _figure(plot_seconds(data.stats), "seconds per frame"))
    return f"<section><h2>Optimization per frame</h2>{figures}</section>"


def _stability_section(data: ReportData) -> str:
    if not data.measures.pairs:
        return ('<section><h2>Temporal stability</h2><p class="muted">E_warp needs two neighbouring finished '
                "frames.</p></section>")
    figure = _figure(plot_warp(data.measures), "E_warp and flow floor per consecutive pair")
    return f"<section><h2>Temporal stability</h2>{_warp_table(data.measures)}{figure}</section>"


def _fidelity_section(data: ReportData) -> str:
    if not data.measures.frames:
        return ""
    measures = data.measures
    note = (f'<p class="muted">Structure: per frame, the correlation between the gradient magnitudes of source and '
            f"stylized frame (grey, blurred by {metrics.STRUCTURE_BLUR_SIGMA:g} px): 1 = the same edges, ~0 = "
            f"unrelated. Mean {metrics.defined_mean(measures.structure):.3f}, drift "
            f"{_times(metrics.drift(measures.structure))} (mean of the last quarter of frames ÷ the first). "
            "A stable output that lost the content is worthless: read it next to E_warp.</p>")
    figure = _figure(plot_structure(measures), "structure and texture energy per frame")
    return f"<section><h2>Content fidelity</h2>{note}{figure}</section>"


def _sheet_section(data: ReportData) -> str:
    if data.sheet is None:
        return '<section><h2>Contact sheet</h2><p class="muted">No finished frames yet.</p></section>'
    cells = len(compare.pick_every(data.done, data.sheet_every))
    every = "every finished frame" if data.sheet_every == 1 else f"one finished frame in {data.sheet_every}, and the last"
    return (f"<section><h2>Contact sheet</h2><p class=\"muted\">{cells} frames: {every}. "
            "Each cell: source on the left, stylized on the right, source frame number top left.</p>"
            f"{_img(_jpeg_uri(data.sheet), 'contact sheet', 'sheet')}</section>")


def render_html(data: ReportData) -> str:
    title = f"{data.video_path.name} × {' + '.join(Path(path).name for path, _ in _styles(data.manifest))}"
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Render report: {html.escape(title)}</title>
<style>{CSS}</style></head>
<body><main>
<header><h1>Render report</h1><p class="subtitle">{html.escape(title)} · generated {generated}</p></header>
{_summary_cards(data)}
<section class="columns">
<div><h2>Files</h2><table>{_files_table(data)}</table></div>
<div><h2>Effective settings</h2>{_settings_table(data.manifest)}</div>
</section>
{_sheet_section(data)}
{_stability_section(data)}
{_fidelity_section(data)}
{_optimization_section(data)}
</main></body></html>
"""


CSS = """
:root { --ink: #1d1d1f; --muted: #6e6e73; --line: #e3e3e8; --panel: #ffffff; --page: #f4f4f7; --accent: #c44e52; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
       font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { margin: 0; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
.subtitle { margin: 2px 0 20px; color: var(--muted); }
h2 { font-size: 17px; margin: 0 0 12px; font-weight: 620; }
h3 { font-size: 14px; margin: 4px 0 8px; font-weight: 620; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px; margin: 0 0 18px; }
section.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; background: none; border: 0; padding: 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.05em; }
.card .value { font-size: 24px; font-weight: 650; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12px; }
.bar { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; margin-top: 8px; }
.bar div { height: 100%; background: var(--accent); }
section.columns { display: grid; grid-template-columns: 1.25fr 1fr; gap: 28px; }
section.columns > div { min-width: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 500; white-space: nowrap; width: 1%; }
td { overflow-wrap: anywhere; }
table.settings td { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
table.settings th { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 12.5px; color: var(--ink); }
table.warp { width: 440px; margin-bottom: 6px; }
table.warp td { font-variant-numeric: tabular-nums; padding-right: 24px; }
code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: var(--muted); font-size: 12.5px; }
img.style { display: block; margin-top: 6px; max-width: 220px; max-height: 160px; border-radius: 4px; border: 1px solid var(--line); }
img.sheet { display: block; width: 100%; height: auto; }
figure { margin: 14px 0 0; }
img.plot { display: block; width: 100%; height: auto; }
@media (max-width: 800px) { section.cards { grid-template-columns: repeat(2, 1fr); } section.columns { grid-template-columns: 1fr; } }
"""


def write_report_or_warn(job) -> Path | None:
    """report.html in the job's work directory, after its render; a finished render never fails
    because of its report (the output is written; the report is only an extra)."""
    from pipeline.planning import plan

    try:
        job_plan = plan(job)
        return write_report(job.workdir_path, job.video, job_plan.start, job_plan.end, job_plan.size, job.output_path)
    except Exception as error:  # noqa: BLE001
        print(f"warning: {job.workdir_path / REPORT_NAME} not written: {error}", file=sys.stderr)
        return None
