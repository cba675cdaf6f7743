"""Command line: parse arguments into a Job, run it, map outcomes to exit codes.

    python cli.py clip.mp4 --style kandinsky.jpg [-o out.mp4] [--preset preview] [--style-weight 20]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import typing
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for artists

from pipeline.config import Job, Settings, make_settings, read_preset, setting_types  # noqa: E402
from pipeline.errors import InputError  # noqa: E402

EXIT_INPUT_ERROR = 2


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
        choices = f" [{'|'.join(meta['choices'])}]" if meta["choices"] and kind is not tuple else ""
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, metavar=kind.__name__.upper() if kind is not tuple else "A,B",
            type=str if kind is tuple else kind, help=f"{meta['help']}{choices} (default: {shown})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cli.py", description="Stylize a video with neural style transfer, temporally stable, keeping fps and sound.")
    parser.add_argument("video", type=Path, help="input video")
    parser.add_argument("--style", type=Path, required=True, help="style image (a painting)")
    parser.add_argument("-o", "--output", type=Path, help="output video, or an image sequence like out.%%04d.png "
                        "(default: <video>.stylized.mp4 beside the input)")
    parser.add_argument("--preset", default="default", help="preset name in configs/ or a .toml path (default: default)")
    parser.add_argument("--start", type=int, default=0, help="first frame to render (default: 0)")
    parser.add_argument("--end", type=int, help="render up to this frame, exclusive (default: the last frame)")
    parser.add_argument("--weights", type=Path, help="VGG16 weights file (Keras .h5); default: found offline")
    parser.add_argument("--workdir", type=Path, help="where finished frames are kept (default: <output>.work)")
    parser.add_argument("--restart", action="store_true", help="discard frames of an earlier, different render")
    parser.add_argument("--quiet", action="store_true", help="one log line per frame instead of a progress bar")
    settings_flags(parser)
    return parser


def job_from_args(args: argparse.Namespace) -> Job:
    overrides = {name: getattr(args, name) for name in setting_types() if getattr(args, name) is not None}
    settings = make_settings(args.preset, overrides)
    output = args.output
    if output is not None and output.resolve() == args.video.resolve():
        raise InputError(f"{output}: refusing to overwrite the input video")
    return Job(video=args.video, style=args.style, settings=settings, output=output,
               start=args.start, end=args.end, weights=args.weights, workdir=args.workdir)


class Stopped(Exception):
    """SIGTERM: stop like Ctrl-C, with the exit code a scheduler expects."""


def _raise_stopped(signum, frame):
    raise Stopped


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stopped)
    from pipeline import render  # TensorFlow loads here, after the arguments are known to be sane
    from pipeline.progress import ProgressReporter

    job = None
    try:
        job = job_from_args(args)
        with ProgressReporter(quiet=args.quiet) as reporter:
            output = render.render(job, on_progress=reporter, restart=args.restart)
        print(f"wrote {output}", file=sys.stderr)
        return 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (KeyboardInterrupt, Stopped) as stop:
        where = f" in {job.workdir_path}" if job else ""
        print(f"\nstopped; finished frames are kept{where}; run the same command again to resume", file=sys.stderr)
        return 143 if isinstance(stop, Stopped) else 130


if __name__ == "__main__":
    sys.exit(main())
