"""Batch job files: clips × styles × presets rendered one after another, overnight, resumable.

    python cli.py --job jobs.toml [--log FILE] [--quiet] [--restart]

A job file is TOML; every path in it is relative to the job file:

    output_dir = "renders"              # where outputs go (default: beside the job file)
    preset = "preview"                  # the preset of every entry that names none (default: default)
    style_weight = 20                   # any setting: for every entry
    weights = "vgg16.h5"                # optional VGG16 weights file

    [[render]]
    video = "clips/a.mp4"               # a list renders each clip ...
    style = ["k.jpg", "starry.jpg"]     # ... with each style ...
    preset = ["preview", "final"]       # ... at each preset: the cross product
    output = "{video}-{style}-{preset}.mp4"  # optional, in output_dir; default "{video}.{style}.{preset}.mp4"
    workdir = "work/{video}-{style}"    # optional; default "<output name>.work" beside the output
    start = 0                           # optional frame range, as --start / --end
    end = 48
    fps = 24                            # optional: an image sequence's rate, as --fps (24, 23.976, "24000/1001")
    bit_depth = 16                      # optional: 16-bit PNG/TIFF sequence output, as --bit-depth
    temporal_weight = 100               # any setting: this entry only

A style is a path, or a blend of paintings written as a list of tables, their Gram targets mixed
by weight (weights default to 1 and are normalized to sum 1):

    style = [{path = "k.jpg", weight = 0.7}, {path = "starry.jpg", weight = 0.3}]   # one render, a blend

A list of paths is a cross product (one render per style); a blend can be one item of it:

    style = ["k.jpg", [{path = "k.jpg", weight = 0.5}, {path = "starry.jpg", weight = 0.5}]]  # two renders

A blend's {style} in output names is its paintings' names and percentages: "k-70+starry-30".

A setting written in the job file beats the preset's value; an entry's beats the top-level one.
No two entries may share an output or a work directory, and no output may be an input (a clip,
a style, the job file, the weights): the job file is refused naming both entries.
An entry that fails (a missing clip, out of memory) does not stop the others. Rerunning the job
resumes every unfinished entry and skips finished ones. Each line printed is also appended, with a
timestamp, to the log (`<job file>.log` beside it, e.g. jobs.log, or `--log`).
"""
from __future__ import annotations

import itertools
import os
import sys
import time
import tomllib
import traceback
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from .config import Job, Style, frame_rate, make_settings, preset_path, setting_types, style_blend
from .errors import InputError
from .events import FrameDone, ProgressCallback, Progressed, Started
from .outputs import refuse_inputs_as_outputs

ENTRY_KEYS = ("video", "style", "preset", "output", "workdir", "start", "end", "fps", "bit_depth")
TOP_KEYS = ("output_dir", "preset", "weights", "render")
PRODUCT_KEYS = ("video", "style", "preset")  # a list in these multiplies the entry
DEFAULT_OUTPUT = "{video}.{style}.{preset}.mp4"


class JobFileError(InputError):
    """The job file itself is unusable: nothing is rendered."""


@dataclass(frozen=True)
class Entry:
    """One render of the job file: its name in the summary, and the Job."""

    number: int  # 1-based, in file order after expanding lists
    name: str
    job: Job


@dataclass
class Outcome:
    entry: Entry
    status: str = "not run"  # done, skipped, failed, stopped, not run
    rendered: int = 0  # frames rendered now
    total: int | None = None  # frames in the range
    seconds: float = 0.0
    message: str = ""


# ---------------------------------------------------------------- parsing


def parse(path: Path) -> list[Entry]:
    """Every render the job file asks for, with settings checked; JobFileError if unusable."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise JobFileError(f"{path}: job file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise JobFileError(f"{path}: not a readable TOML job file ({error})") from None
    base = path.parent
    settings_keys = set(setting_types())
    _refuse_unknown(path, "top level", document, set(TOP_KEYS) | settings_keys)
    renders = document.get("render")
    if not isinstance(renders, list) or not renders or not all(isinstance(r, dict) for r in renders):
        raise JobFileError(f"{path}: needs at least one [[render]] entry (with video and style)")
    output_dir = base / _text(path, "top level", "output_dir", document.get("output_dir", "."))
    weights = document.get("weights")
    weights = base / _text(path, "top level", "weights", weights) if weights is not None else None
    defaults = {k: v for k, v in document.items() if k in settings_keys}

    entries: list[Entry] = []
    for position, raw in enumerate(renders, 1):
        where = f"[[render]] #{position}"
        _refuse_unknown(path, where, raw, set(ENTRY_KEYS) | settings_keys)
        for key in ("video", "style"):
            if key not in raw:
                raise JobFileError(f"{path}: {where} has no {key}")
        choices = {key: _texts(path, where, key, raw.get(key, document.get(key, "default")))
                   for key in PRODUCT_KEYS if key != "style"}
        choices["style"] = _style_choices(path, where, raw["style"], base)
        overrides = {**defaults, **{k: v for k, v in raw.items() if k in settings_keys}}
        start, end = raw.get("start"), raw.get("end")
        start = None if start is None else _frame(path, where, "start", start)
        end = None if end is None else _frame(path, where, "end", end)
        fps = None if raw.get("fps") is None else _rate(path, where, raw["fps"])
        bit_depth = raw.get("bit_depth", 8)
        if bit_depth not in (8, 16) or isinstance(bit_depth, bool):
            raise JobFileError(f"{path}: {where}: bit_depth {bit_depth!r} is not 8 or 16")
        output_pattern = _text(path, where, "output", raw.get("output", DEFAULT_OUTPUT))
        workdir_pattern = raw.get("workdir")
        workdir_pattern = None if workdir_pattern is None else _text(path, where, "workdir", workdir_pattern)
        for video, style, preset in itertools.product(*(choices[k] for k in PRODUCT_KEYS)):
            preset_ref = base / preset if preset.endswith(".toml") else preset
            try:
                preset_path(preset_ref)
                settings = make_settings(preset_ref, overrides)
            except InputError as error:
                raise JobFileError(f"{path}: {where}: {error}") from None
            names = {"video": Path(video).stem, "style": _style_name(style), "preset": Path(preset).stem}
            output = output_dir / _filled(path, where, "output", output_pattern, names)
            workdir = None if workdir_pattern is None else base / _filled(path, where, "workdir", workdir_pattern, names)
            span = f" [{'' if start is None else start}:{'' if end is None else end}]" if (start, end) != (None, None) else ""
            name = f"{names['video']} / {_style_label(style)} / {names['preset']}{span}"
            job = Job(video=base / video, style=style, settings=settings, output=output,
                      start=start, end=end, weights=weights, workdir=workdir, fps=fps, bit_depth=bit_depth)
            entries.append(Entry(len(entries) + 1, name, job))
    _refuse_shared_places(path, entries)
    _refuse_outputs_on_inputs(path, entries)
    return entries


def _filled(path: Path, where: str, key: str, pattern: str, names: dict[str, str]) -> str:
    try:
        return pattern.format(**names)
    except (KeyError, IndexError, ValueError) as error:
        raise JobFileError(f"{path}: {where}: {key} {pattern!r}: unknown placeholder {error} "
                           "(use {video}, {style}, {preset})") from None


def _refuse_unknown(path: Path, where: str, table: dict, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise JobFileError(f"{path}: {where}: unknown key(s) {', '.join(unknown)}")


def _text(path: Path, where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise JobFileError(f"{path}: {where}: {key} must be a non-empty string, not {value!r}")
    return value


def _texts(path: Path, where: str, key: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise JobFileError(f"{path}: {where}: {key} is an empty list")
    return [_text(path, where, key, v) for v in values]


def _style_choices(path: Path, where: str, value: Any, base: Path) -> list[tuple[Style, ...]]:
    """The styles an entry renders with: a path; a list of tables (one blend); or a list whose
    items are paths or blends (one render each)."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [_blend(path, where, value, base)]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise JobFileError(f"{path}: {where}: style is an empty list")
    if any(isinstance(item, dict) for item in items):
        raise JobFileError(f"{path}: {where}: style mixes paths and {{path, weight}} tables; a blend is a list of "
                           "tables only, and goes inside the list of styles as a list of its own")
    return [_blend(path, where, item, base) if isinstance(item, list)
            else style_blend(base / _text(path, where, "style", item)) for item in items]


def _blend(path: Path, where: str, tables: list, base: Path) -> tuple[Style, ...]:
    if not tables or not all(isinstance(table, dict) for table in tables):
        raise JobFileError(f"{path}: {where}: a style blend is a list of {{path = ..., weight = ...}} tables, "
                           f"not {tables!r}")
    styles = []
    for table in tables:
        _refuse_unknown(path, f"{where} style", table, {"path", "weight"})
        if "path" not in table:
            raise JobFileError(f"{path}: {where}: style blend table {table!r} has no path")
        weight = table.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise JobFileError(f"{path}: {where}: {table['path']}: style weight {weight!r} must be a number, 0 or more")
        styles.append(Style(base / _text(path, where, "style path", table["path"]), float(weight)))
    try:
        return style_blend(styles)
    except InputError as error:
        raise JobFileError(f"{path}: {where}: {error}") from None


def _style_name(blend: tuple[Style, ...]) -> str:
    """{style} in output names: 'k' for one painting, 'k-70+starry-30' for a blend."""
    if len(blend) == 1:
        return blend[0].path.stem
    return "+".join(f"{style.path.stem}-{round(100 * style.weight)}" for style in blend)


def _style_label(blend: tuple[Style, ...]) -> str:
    if len(blend) == 1:
        return blend[0].path.stem
    return " + ".join(f"{style.path.stem} {100 * style.weight:.0f}%" for style in blend)


def _rate(path: Path, where: str, value) -> Fraction:
    try:
        return frame_rate(value)
    except ValueError as error:
        raise JobFileError(f"{path}: {where}: fps {error}") from None


def _frame(path: Path, where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobFileError(f"{path}: {where}: {key} must be a frame number, not {value!r}")
    return value


def _refuse_shared_places(path: Path, entries: list[Entry]) -> None:
    """Two entries writing one output or one work directory would destroy each other's frames."""
    for what, place, fix in (("output", lambda job: job.output_path, "`output` names"),
                             ("work directory", lambda job: job.workdir_path, "`output` or `workdir` names")):
        seen: dict[Path, Entry] = {}
        for entry in entries:
            key = os.path.realpath(place(entry.job))  # never raises, even on a link loop
            if key in seen:
                raise JobFileError(
                    f"{path}: entries {seen[key].number} ({seen[key].name}) and {entry.number} ({entry.name}) "
                    f"both use the {what} {place(entry.job)}; give them different {fix}")
            seen[key] = entry


def _refuse_outputs_on_inputs(path: Path, entries: list[Entry]) -> None:
    inputs = [path, *(p for e in entries for p in (e.job.video, *e.job.style_paths, e.job.weights))]
    try:
        refuse_inputs_as_outputs([e.job.output_path for e in entries], inputs)
    except InputError as error:
        raise JobFileError(f"{path}: {error}") from None


# ---------------------------------------------------------------- running


class JobLog:
    """Prints a line and appends it, timestamped, to the job's log file."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, line: str = "") -> None:
        print(line, file=sys.stderr, flush=True)
        self.write(line)

    def write(self, text: str) -> None:
        """Into the log only (tracebacks)."""
        stamp = datetime.now().isoformat(sep=" ", timespec="seconds")
        try:
            with open(self.path, "a", encoding="utf-8") as log:
                for line in text.splitlines() or [""]:
                    log.write(f"{stamp}  {line}\n")
        except OSError as error:  # a full disk must not turn a finished render into a failure
            print(f"warning: {self.path}: cannot write the job log ({error.strerror})", file=sys.stderr)


ProgressFactory = Callable[[Entry], Any]  # returns a context manager that is a render progress callback


def run(outcomes: list[Outcome], log: JobLog, progress: ProgressFactory, restart: bool = False) -> None:
    """Render every entry (`outcomes`, one per entry, made by `outcomes_for`) in order, filling
    in how each went; a failing one is recorded and the next one starts.

    Ctrl-C / SIGTERM (a KeyboardInterrupt) marks the current entry stopped and the rest not run,
    then propagates; the caller still holds `outcomes` for the summary.
    """
    for outcome in outcomes:
        entry = outcome.entry
        log(f"[{entry.number}/{len(outcomes)}] {entry.name} -> {entry.job.output_path}")
        began = time.monotonic()
        try:
            _run_one(outcome, progress, restart)
        except KeyboardInterrupt:
            outcome.status, outcome.seconds = "stopped", time.monotonic() - began
            raise
        except InputError as error:
            outcome.status, outcome.message = "failed", str(error)
        except Exception as error:  # noqa: BLE001 - one broken entry must not end the night
            outcome.status, outcome.message = "failed", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            log.write(traceback.format_exc())
        outcome.seconds = time.monotonic() - began
        log(f"[{entry.number}/{len(outcomes)}] {outcome.status}"
            + (f": {outcome.message}" if outcome.message else f" ({_frames(outcome)} frames, {_duration(outcome.seconds)})"))


def outcomes_for(entries: list[Entry]) -> list[Outcome]:
    return [Outcome(entry) for entry in entries]


def render_whole(job: Job, on_progress: ProgressCallback | None = None, restart: bool = False) -> Path:
    """A whole render: its chunks on Ray when the settings name a cluster (Ray loads only then),
    else here in one chain."""
    if job.settings.ray:
        from .farm import render_on_ray

        return render_on_ray(job, on_progress, restart)
    from .render import render

    return render(job, on_progress, restart)


def _run_one(outcome: Outcome, progress: ProgressFactory, restart: bool) -> None:
    from .planning import with_recorded_optimizer, workdir_state

    job = with_recorded_optimizer(outcome.entry.job)
    state = workdir_state(job)
    if state == "different" and restart:
        job = outcome.entry.job  # begun again: "auto" is this machine's choice
    if state == "complete" and job.output_path.exists():
        outcome.status = "skipped"
        outcome.total = outcome.rendered = None
        return

    def count(event) -> None:
        if isinstance(event, Started):
            outcome.total = event.total
        elif isinstance(event, FrameDone):
            outcome.rendered += 1
        elif isinstance(event, Progressed):  # Ray: frames finished on disk, resumed ones too
            outcome.rendered = event.done

    with progress(outcome.entry) as reporter:
        def on_progress(event) -> None:
            count(event)
            reporter(event)

        render_whole(job, on_progress=on_progress, restart=restart and state == "different")
    from .report import write_report_or_warn  # matplotlib loads only here

    write_report_or_warn(job)
    outcome.status = "done"


def _frames(outcome: Outcome) -> str:
    if outcome.total is None:
        return "-"
    return f"{outcome.rendered}/{outcome.total}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def summary(outcomes: list[Outcome]) -> list[str]:
    """The table shown (and logged) at the end: entry, status, frames, time, output."""
    rows = [("#", "entry", "status", "frames", "time", "output")]
    rows += [(str(o.entry.number), o.entry.name, o.status, _frames(o),
              _duration(o.seconds), str(o.entry.job.output_path)) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines += [f"#{o.entry.number}: {o.message}" for o in outcomes if o.message]
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("done", "skipped", "failed", "stopped", "not run")}
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items() if n))
    return lines


def exit_code(outcomes: list[Outcome]) -> int:
    """0 when every entry is done or skipped, 1 when any failed."""
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def default_log_path(job_file: Path) -> Path:
    return job_file.with_suffix(".log")
