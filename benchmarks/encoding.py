"""How much flicker the H.264 encode adds: E_warp of the encoded video against its own PNG frames.

    python benchmarks/encoding.py FRAMES_DIR [--video samples/realshort.mp4] [--start 0] [--print-only]

FRAMES_DIR is a work directory's frames/ (NNNNNN.png, numbered by source frame). Each x264
setting replaces the video options of the encoder's real command (pipeline.video._encode_command:
same input, crop and yuv420p); the result is decoded and measured like any output (metrics,
DeepFlow on the source frames). Reported: E_warp ÷ the PNG frames' E_warp (mean, and the worst
pair), PSNR against the PNGs, and the size of the file.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import metrics, video  # noqa: E402
from pipeline.images import load_rgb  # noqa: E402

MEDIUM, YUV420, YUV444 = ["-preset", "medium"], ["-pix_fmt", "yuv420p"], ["-pix_fmt", "yuv444p"]
SETTINGS = {  # name: the x264 options from -c:v libx264 on, pixel format included
    "crf 18, yuv420p (before)": ["-crf", "18", *MEDIUM, *YUV420],
    "crf 14": ["-crf", "14", *MEDIUM, *YUV420],
    "crf 12": ["-crf", "12", *MEDIUM, *YUV420],
    "crf 16, tune grain": ["-crf", "16", *MEDIUM, "-tune", "grain", *YUV420],
    "crf 16, bframes=0": ["-crf", "16", *MEDIUM, "-x264-params", "bframes=0", *YUV420],
    "crf 16, keyint=12": ["-crf", "16", *MEDIUM, "-x264-params", "keyint=12", *YUV420],
    "lossless (qp 0), yuv420p": ["-qp", "0", *MEDIUM, *YUV420],
    "lossless (qp 0), yuv444p": ["-qp", "0", *MEDIUM, *YUV444],
    "crf 18, yuv444p": ["-crf", "18", *MEDIUM, *YUV444],
    "crf 16, yuv444p": ["-crf", "16", *MEDIUM, *YUV444],
    "crf 14, yuv444p": ["-crf", "14", *MEDIUM, *YUV444],
    "crf 16, tune grain, yuv444p": ["-crf", "16", *MEDIUM, "-tune", "grain", *YUV444],
}


def command_with(options: list[str], frames_dir: Path, first: int, count: int, output: Path, fps: Fraction) -> list[str]:
    """The encoder's own command with its x264 options (up to the pixel format) replaced by `options`."""
    command = video._encode_command(str(frames_dir / "%06d.png"), first, count, output, fps, None, 0)
    begin, end = command.index("-c:v") + 2, command.index("-pix_fmt") + 2
    return command[:begin] + options + command[end:]


def encode(options: list[str], frames_dir: Path, first: int, count: int, output: Path, fps: Fraction) -> None:
    subprocess.run(command_with(options, frames_dir, first, count, output, fps), check=True, capture_output=True)


def decoded(path: Path) -> list[np.ndarray]:
    info = video.probe(path)
    return list(video.read_frames(info, 0, info.frame_count, (info.width, info.height)))


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b)])
    return float(10 * np.log10(255.0 ** 2 / mse))


def x264_version(path: Path) -> str:
    """x264 writes its version and options into the stream (an SEI message)."""
    found = re.search(rb"x264 - core \d+ r\d+ \w+", path.read_bytes())
    return found.group(0).decode() if found else "x264 (version not found)"


def versions(encoded_file: Path) -> str:
    ffmpeg = subprocess.run([video.ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    packages = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("imageio-ffmpeg", "opencv-contrib-python-headless", "numpy"))
    return f"git {commit} (with the working tree's changes); {ffmpeg.split(' Copyright')[0]}; {x264_version(encoded_file)}; {packages}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path, help="a work directory's frames/ folder")
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--print-only", action="store_true", help="print the table; do not append it to RESULTS.md")
    args = parser.parse_args(argv)

    numbers = sorted(int(p.stem) for p in args.frames.glob("*.png"))
    first, count = numbers[0], len(numbers)
    pngs = [load_rgb(args.frames / f"{n:06d}.png") for n in numbers]
    info = video.probe(args.video)
    size = (pngs[0].shape[1], pngs[0].shape[0])

    def measure(frames: list[np.ndarray]) -> metrics.ClipMeasures:
        return metrics.measure_clip(video.read_frames(info, first, first + count, size), frames)

    reference = measure(pngs)
    rows, scratch = [], Path(tempfile.mkdtemp(prefix="encoding-"))
    for name, options in SETTINGS.items():
        output = scratch / f"{len(rows)}.mp4"
        encode(options, args.frames, first, count, output, info.fps)
        frames = decoded(output)
        clip = measure(frames)
        per_pair = np.array(clip.stylized.per_pair) / np.array(reference.stylized.per_pair)
        rows.append({"x264 options": " ".join(options), "setting": name,
                     "× frames' E_warp": clip.stylized.mean / reference.stylized.mean,
                     "worst pair ×": float(per_pair.max()), "worst pair": int(per_pair.argmax()) + first,
                     "PSNR dB": psnr(frames, pngs), "KiB": output.stat().st_size / 1024,
                     "kbit/s": output.stat().st_size * 8 / 1000 / (count / float(info.fps))})
        print(rows[-1], [f"{v:.2f}" for v in per_pair], flush=True)
    columns = ["setting", "x264 options", "× frames' E_warp", "worst pair ×", "worst pair", "PSNR dB", "KiB", "kbit/s"]
    table = markdown_table(rows, columns)
    note = (f"{count} frames {first}-{first + count - 1} of {args.video.name} at {size[0]}×{size[1]}, encoded by "
            "the encoder's own command with only the x264 options changed, decoded, and measured with "
            f"{metrics.EVALUATION_FLOW} on the source frames. The PNG frames' E_warp: {reference.stylized.mean:.3g}. "
            f"Versions: {versions(scratch / '0.mp4')}.")
    print(note)
    print(table)
    if not args.print_only:
        append_results("H.264 encoding: E_warp of the encoded video against its PNG frames", table, note)


if __name__ == "__main__":
    main()
