"""Command line: parse arguments into a Job, run it, map outcomes to exit codes.

    python cli.py clip.mp4 --style kandinsky.jpg [-o out.mp4] [--preset preview] [--style-weight 20]
    python cli.py --job jobs.toml [--log jobs.log]       # a batch of renders (see pipeline/jobs.py)
    python cli.py eval clip.mp4 clip.stylized.work [--json eval.json]   # temporal stability

Exit codes: 0 done; 1 a job file entry failed; 2 a user mistake (one `error:` line);
130 Ctrl-C; 143 SIGTERM. Stopped renders resume when the same command runs again.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import tempfile
import typing
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for artists

from pipeline.config import Job, Settings, frame_rate, make_settings, parse_style, read_preset, setting_types, style_blend  # noqa: E402
from pipeline.errors import ChunkFailed, DiskFull, InputError, OutOfMemory  # noqa: E402
from pipeline.workdir import DamagedFrames, Difference, DifferentRender, NotAWorkDir, OutputExists, WorkDirBusy  # noqa: E402

EXIT_INPUT_ERROR = 2
EXIT_ENTRY_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one `error: ...` line and exit 2, like every other user mistake."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_INPUT_ERROR, f"error: {message} (see: python cli.py --help)\n")


def settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; its default and help come from configs/default.toml and Settings."""
    defaults = read_preset("default")
    group = parser.add_argument_group("settings (override the preset)")
    for name, kind in setting_types().items():
        meta = Settings.__dataclass_fields__[name].metadata
        shown = ",".join(defaults[name]) if kind is tuple else defaults[name]
        choices = f" [{'|'.join(c or repr(c) for c in meta['choices'])}]" if meta["choices"] and kind is not tuple else ""
        bare = {"nargs": "?", "const": meta["const"]} if meta["const"] is not None else {}
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, metavar=kind.__name__.upper() if kind is not tuple else "A,B",
            type=str if kind is tuple else kind, help=f"{meta['help']}{choices} (default: {shown!r})", **bare,
        )


def import_tensorflow_quietly() -> None:
    """TensorFlow's C++ start-up lines (oneDNN, CUDA probing) bypass Python's logging; send
    them to a scratch file while it imports, and show them only if the import fails."""
    sink, saved = tempfile.TemporaryFile(), os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        import keras  # noqa: F401

        from pipeline.devices import take_gpu_memory_as_needed

        take_gpu_memory_as_needed()  # probes CUDA now, while quiet
    except BaseException:
        os.dup2(saved, 2)
        sink.seek(0)
        sys.stderr.write(sink.read().decode(errors="replace"))
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.close()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _frame_rate(text: str) -> Fraction:
    try:
        return frame_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _frame_range(text: str) -> tuple[int, int]:
    """'1001-1120' -> (1001, 1121): inclusive, as farm managers count, to a half-open range."""
    first, _, last = text.partition("-")
    try:
        first_frame, last_frame = int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range like 1001-1120") from None
    if last_frame < first_frame:
        raise argparse.ArgumentTypeError(f"{text!r} ends before it starts")
    return first_frame, last_frame + 1


def build_parser() -> argparse.ArgumentParser:
    presets = ", ".join(sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.toml")))
    parser = _Parser(
        prog="cli.py", description="Stylize a video with neural style transfer, temporally stable, keeping fps and sound.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets (--preset): {presets}; any setting can also be given as a flag (above).\n"
               "measuring a render: python cli.py eval SOURCE WORKDIR [--baseline COLD_WORKDIR] "
               "(python cli.py eval --help)")
    parser.add_argument("video", type=Path, nargs="?", help="input video, or an image sequence: a pattern like "
                        "shot.%%04d.png or shot.####.png, or a folder of numbered frames (PNG, TIFF, JPEG, PPM, EXR)")
    parser.add_argument("--style", action="append", metavar="IMAGE[:WEIGHT]",
                        help="style image (a painting); required unless --job. Repeat it to blend paintings: "
                        "--style a.jpg:0.7 --style b.jpg:0.3 mixes their Gram targets by weight (default weight 1; "
                        "weights are normalized to sum 1)")
    parser.add_argument("-o", "--output", type=Path, help="output video (.mp4: H.264; .mov: ProRes 422 HQ), or an "
                        "image sequence like out.%%04d.png (or .tif, .jpg, .exr: half-float linear) "
                        "(default: <video>.stylized.mp4 beside the input)")
    parser.add_argument("--fps", type=_frame_rate, help="frame rate of an image-sequence input, like 24, 25 or "
                        "24000/1001 (default: 24)")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8,
                        help="bits per channel of a PNG or TIFF sequence output (default: 8); 16 holds the "
                        "optimizer's float result, though stylization itself works in 8-bit sRGB")
    parser.add_argument("--preset", default="default", help="preset name in configs/ or a .toml path (default: default)")
    parser.add_argument("--start", type=int, help="first frame to render, by the source's numbers (a sequence's "
                        "from its first file, like 1001; a video's from 0) (default: the first frame)")
    parser.add_argument("--end", type=int, help="render up to this frame number, exclusive (default: the last frame)")
    parser.add_argument("--weights", type=Path, help="VGG16 weights file (Keras .h5); default: found offline")
    parser.add_argument("--workdir", type=Path, help="where finished frames are kept (default: <output>.work)")
    parser.add_argument("--restart", action="store_true",
                        help="delete the frames of an earlier, different render in the work directory, and start over")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files that this render did not write (never an input)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for another render using the same work directory instead of refusing")
    parser.add_argument("--quiet", action="store_true", help="one log line per frame instead of a progress bar")
    previews = parser.add_argument_group("previews")
    previews.add_argument("--compare", action="store_true",
                          help="also write <output>.compare.mp4: source | stylized side by side, with sound")
    previews.add_argument("--contact-sheet", type=_positive_int, metavar="N",
                          help="also write <output>.sheet.png: every Nth frame next to its source")
    farm = parser.add_argument_group("render farms (see README: frame tokens)")
    farm.add_argument("--frames", type=_frame_range, metavar="A-B",
                      help="render only frames A to B, both included, into the work directory; no encoding")
    farm.add_argument("--assemble", action="store_true",
                      help="only encode the output from the work directory's frames; refuses if any are missing")
    farm.add_argument("--stitch", type=int, metavar="FRAME",
                      help="re-render the frames before the chunk border at FRAME (the first frame of a --frames "
                      "range) so the two ranges join; run once both ranges are done (--assemble runs any left)")
    batch = parser.add_argument_group("batch")
    batch.add_argument("--job", type=Path, help="render every entry of a TOML job file (see pipeline/jobs.py) "
                       "instead of one video; rerun it to resume")
    batch.add_argument("--log", type=Path, help="job log file (default: the job file's name with .log, beside it)")
    settings_flags(parser)
    return parser


_SINGLE_RENDER_ONLY = ("video", "style", "output", "workdir", "start", "end", "fps")


def check_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One video and --style, or --job alone (its file holds videos, styles and settings)."""
    if args.job is None:
        missing = [name for name, value in (("video", args.video), ("--style", args.style)) if value is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        if args.log is not None:
            parser.error("--log goes with --job")
        return
    given = [name for name in _SINGLE_RENDER_ONLY if getattr(args, name) is not None]
    given += [name for name in setting_types() if getattr(args, name) is not None]
    given += ["bit_depth"] if args.bit_depth != 8 else []
    given += ["preset"] if args.preset != "default" else []
    if given:
        flags = ", ".join("video" if name == "video" else "--" + name.replace("_", "-") for name in given)
        parser.error(f"--job takes its videos, styles and settings from the job file, not from {flags}")


def job_from_args(args: argparse.Namespace) -> Job:
    overrides = {name: getattr(args, name) for name in setting_types() if getattr(args, name) is not None}
    settings = make_settings(args.preset, overrides)
    styles = style_blend(parse_style(text) for text in args.style)
    return Job(video=args.video, style=styles, settings=settings, output=args.output, start=args.start, end=args.end,
               weights=args.weights, workdir=args.workdir, overwrite=args.overwrite, wait=args.wait,
               fps=args.fps, bit_depth=args.bit_depth)


def announce_sequence_rate(job: Job) -> None:
    """One line saying the rate an image sequence is read at: it has none of its own."""
    from pipeline import sequences, video

    if sequences.is_sequence_input(job.video):
        rate = job.fps or video.SEQUENCE_FPS
        given = "--fps" if job.fps else "default; set it with --fps"
        print(f"{job.video}: image sequence at {rate} fps ({given})", file=sys.stderr)


def preview_paths(args: argparse.Namespace, job: Job) -> dict[str, Path]:
    from pipeline import compare

    wanted = {"compare": (args.compare, ".compare.mp4"), "sheet": (args.contact_sheet, ".sheet.png")}
    return {name: compare.preview_path(job.output_path, suffix, job.output_is_sequence)
            for name, (asked, suffix) in wanted.items() if asked}


def write_previews(args: argparse.Namespace, job: Job) -> list[Path]:
    """The preview aids asked for with --compare and --contact-sheet, from the finished frames."""
    from pipeline import compare, planning
    from pipeline.workdir import WorkDir

    job_plan = planning.plan(job)
    paths = preview_paths(args, job)
    planning.check_outputs(job, job_plan, tuple(paths.values()))
    where = (job.workdir_path, job_plan.info, job_plan.size, job_plan.start, job_plan.end)
    written = []
    if "compare" in paths:
        audio_from = job.video if job_plan.info.has_audio else None
        written.append(compare.write_side_by_side(*where, paths["compare"], audio_from=audio_from))
    if "sheet" in paths:
        written.append(compare.write_contact_sheet(*where, args.contact_sheet, paths["sheet"]))
    WorkDir(job.workdir_path).record_outputs(written)
    return written


def continue_advice(error: DifferentRender) -> str:
    """What to do with the frames of another render: continue it, with its changed settings given
    back as flags (`--style-weight 10`) and the inputs it began with; or render elsewhere; or over."""
    flags, kept = [], []
    for difference in error.differences:
        if not isinstance(difference, Difference):  # no manifest: nothing to continue
            continue
        if flag := old_value_flag(difference):
            flags.append(flag)
        elif difference.name.startswith("settings."):
            kept.append(f"{difference.name.removeprefix('settings.')} setting")
        elif (entry := difference.name.split(".")[0]) in ("video", "style", "weights", "fps"):
            kept.append(entry)
    ways = ([f"give the old values as flags ({' '.join(flags)})"] if flags else []) + (
        [f"keep the {' and '.join(dict.fromkeys(kept))} it began with"] if kept else [])
    continue_it = f"to continue it, {' and '.join(ways)}; " if ways else ""
    return continue_it + "--workdir DIR renders elsewhere and keeps them; --restart deletes them and starts over"


def old_value_flag(difference: Difference) -> str | None:
    """settings.style_weight 10.0 -> 30.0: '--style-weight 10'; size [320, 240] -> …: '--size 320';
    None where no flag gives the old value back (an input, or a setting the old render did not record)."""
    name, old = difference.name, difference.old
    if not (name.startswith("settings.") or name == "size"):
        return None
    if name == "size":
        old = max(old)  # --size is the long side
    elif isinstance(old, (list, tuple)):
        old = ",".join(map(str, old))
    elif isinstance(old, float):
        old = f"{old:g}"
    elif old is None or isinstance(old, bool):
        return None
    return shlex.join([f"--{name.removeprefix('settings.').replace('_', '-')}", str(old)])


# What the user can do about a refusal, in this command's words (the pipeline says what happened).
# {resume}: how to go on from what is kept (never "with --restart", which would discard it).
ADVICE = {
    DifferentRender: continue_advice,
    NotAWorkDir: "name a new or empty folder with --workdir",
    OutputExists: "--overwrite replaces it; -o writes elsewhere",
    WorkDirBusy: "--wait waits for it to finish",
    DamagedFrames: "run the --frames tasks that cover them again, then --assemble",
    DiskFull: "free space, then {resume}",
    OutOfMemory: "render at the size that fits, or with --preset preview",
    ChunkFailed: "finished frames are kept; {resume}",
}


def advice_for(error: Exception, restart: bool = False) -> str:
    resume = "run the same command again" + (" without --restart" if restart else "") + " to resume"
    return next((f" ({advice(error) if callable(advice) else advice.format(resume=resume)})"
                 for kind, advice in ADVICE.items() if isinstance(error, kind)), "")


def eval_parser() -> argparse.ArgumentParser:
    from pipeline.evaluate import COLD_BASELINE_COMMAND
    from pipeline.metrics import EVALUATION_FLOW

    parser = _Parser(
        prog="cli.py eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Temporal stability (E_warp, Lai et al. 2018) of a stylized clip next to the source's own and "
        "its per-pair flow floor, content fidelity (structure, its drift, texture energy per frame), per-frame "
        "losses from a work directory, and ratios to a cold baseline render.",
        epilog=f"cold baseline for --baseline:\n  {COLD_BASELINE_COMMAND}")
    parser.add_argument("source", type=Path, help="the source video")
    parser.add_argument("stylized", type=Path, help="stylized video, frames folder, pattern like out.%%04d.png, "
                        "or a render's work directory")
    parser.add_argument("--start", type=int, help="source frame shown by the first stylized frame "
                        "(default: a work directory's first frame, else 0)")
    parser.add_argument("--flow", default=EVALUATION_FLOW, help="optical flow that measures E_warp; best not the "
                        f"render's (default: {EVALUATION_FLOW}; farneback is faster)")
    parser.add_argument("--render-flow", help="flow the render used, to carry frames for the flow floor "
                        "(default: the work directory's manifest, else the default preset's)")
    parser.add_argument("--baseline", type=Path, metavar="WORKDIR",
                        help="work directory of a cold render of the same frames (see below): adds ratios to it")
    parser.add_argument("--json", type=Path, help="also write the results, per pair and per frame, as JSON")
    return parser


def run_eval(argv: list[str]) -> int:
    args = eval_parser().parse_args(argv)
    from pipeline import evaluate

    try:
        result = evaluate.evaluate(args.source, args.stylized, args.start, args.flow, args.render_flow, args.baseline)
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    for warning in result["warnings"]:
        print(warning, file=sys.stderr)
    print(evaluate.format_evaluation(result))
    if args.json:
        evaluate.write_json(result, args.json)
    return 0


class Stopped(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C, with the exit code a scheduler expects."""

    exit_code = 143


_stop_requested = False


def _raise_stopped(signum, frame):
    global _stop_requested
    _stop_requested = True
    raise Stopped


def reporter(quiet: bool):
    """The progress callback, which also raises Stopped again at the next event once SIGTERM
    came: the handler's own exception can land inside library code that swallows it (seen: a
    render that ran to the end after SIGTERM, about one run in three)."""
    from pipeline.progress import ProgressReporter

    class StoppableReporter(ProgressReporter):
        def __call__(self, event) -> None:
            if _stop_requested:
                raise Stopped
            super().__call__(event)

    return StoppableReporter(quiet=quiet)


def resume_command(argv: list[str]) -> str:
    """The command that continues a stopped render: the same one, less --restart."""
    return shlex.join(["python", "cli.py", *(a for a in argv if a != "--restart")])


def announced_device(job: Job, restart: bool) -> Job:
    """The job as it will render, with the device and optimizer said on stderr's first line; "auto"
    resumes with the optimizer the work directory began with (planning.with_recorded_optimizer)."""
    from pipeline.config import chosen_optimizer
    from pipeline.devices import rendering_device
    from pipeline.planning import with_recorded_optimizer

    if job.settings.ray:  # the cluster's workers render, not this machine
        print(rendering_device(None), file=sys.stderr)
        return job
    followed, ours = with_recorded_optimizer(job, restart), chosen_optimizer(job.settings.optimizer)
    if chosen_optimizer(followed.settings.optimizer) == ours:
        print(rendering_device(job.settings.optimizer), file=sys.stderr)
        return job
    print(rendering_device(followed.settings.optimizer), file=sys.stderr)
    print(f"{job.workdir_path}: resumes with the optimizer it began with, {followed.settings.optimizer}, "
          f"not auto's {ours} (--restart begins again)", file=sys.stderr)
    return followed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["eval"]:
        return run_eval(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    check_mode(parser, args)
    signal.signal(signal.SIGTERM, _raise_stopped)
    if args.job is not None:
        return run_job_file(args, argv)
    import_tensorflow_quietly()  # after the arguments are known to be sane
    from pipeline import jobs, planning, render
    job = None
    try:
        job = job_from_args(args)
        job = announced_device(job, args.restart)
        announce_sequence_rate(job)
        if args.frames:
            with reporter(args.quiet) as progress:
                render.render_range(job, *args.frames, on_progress=progress)
            print(f"rendered frames {args.frames[0]}-{args.frames[1] - 1} into {job.workdir_path}", file=sys.stderr)
            return 0
        if args.stitch is not None:
            from pipeline.stitch import stitch_task

            rendered = stitch_task(job, args.stitch)
            print(f"stitched the border at frame {args.stitch} ({len(rendered)} frame(s) rendered) "
                  f"into {job.workdir_path}", file=sys.stderr)
            return 0
        if args.compare or args.contact_sheet:  # refuse now, not after the render, if a preview may not be written
            planning.check_outputs(job, planning.plan(job), tuple(preview_paths(args, job).values()))
        if args.assemble:
            output = render.assemble_only(job)
        else:
            with reporter(args.quiet) as progress:
                output = jobs.render_whole(job, progress, args.restart)
        print(f"wrote {output}", file=sys.stderr)
        from pipeline.report import write_report_or_warn  # matplotlib loads only here

        for written in [*write_previews(args, job), write_report_or_warn(job)]:
            if written:
                print(f"wrote {written}", file=sys.stderr)
        return 0
    except ChunkFailed as error:  # a part of the render failed after its retries: not the user's doing
        print(f"error: {error}{advice_for(error, args.restart)}", file=sys.stderr)
        return EXIT_ENTRY_FAILED
    except InputError as error:
        print(f"error: {error}{advice_for(error, args.restart)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt as stop:
        where = f" in {job.workdir_path}" if job else ""
        print(f"\nstopped; finished frames are kept{where}; run the same command again to resume: "
              f"{resume_command(argv)}", file=sys.stderr)
        return getattr(stop, "exit_code", 130)


def run_job_file(args: argparse.Namespace, argv: list[str]) -> int:
    """Every entry of the job file; a summary table at the end; 1 if any entry failed."""
    from pipeline import jobs

    try:
        entries = jobs.parse(args.job)
        flags = {"overwrite": args.overwrite, "wait": args.wait, **({"weights": args.weights} if args.weights else {})}
        entries = [jobs.Entry(e.number, e.name, dataclasses.replace(e.job, **flags)) for e in entries]
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    import_tensorflow_quietly()  # once the job file parsed, before the first render loads it
    from pipeline.devices import rendering_device

    log = jobs.JobLog(args.log or jobs.default_log_path(args.job))
    log(f"job {args.job}: {len(entries)} render(s), {rendering_device()}")
    outcomes = jobs.outcomes_for(entries)
    try:
        jobs.run(outcomes, log, lambda entry: reporter(args.quiet), restart=args.restart)
    except KeyboardInterrupt as stop:
        for line in jobs.summary(outcomes):
            log(line)
        log(f"stopped; finished frames are kept; run the same command again to resume: {resume_command(argv)}")
        return getattr(stop, "exit_code", 130)
    for line in jobs.summary(outcomes):
        log(line)
    return EXIT_ENTRY_FAILED if jobs.exit_code(outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
