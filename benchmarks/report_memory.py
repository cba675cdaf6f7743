"""Peak memory of writing report.html against the clip's length: it must not grow with the clip.

    python benchmarks/report_memory.py [--lengths 12,48,144] [--size 320] [--flow farneback] [--print-only]

For each length a work directory is made of the source frames themselves (a "render" that is the
source: report.html measures and plots it like any other), from a ping-pong of the sample long
enough for the longest run. Each report is written in a fresh process that reports its own peak
resident memory (ru_maxrss), so the numbers are the report's alone (it never imports TensorFlow). Frames are streamed (video.read_frames, FinalFrames.load one at a
time into metrics.measure_clip); what grows with the length is one float per pair and per frame.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import images, video  # noqa: E402

WRITE_ONE = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from pipeline import metrics, report
metrics.EVALUATION_FLOW = {flow!r}
began = time.perf_counter()
report.write_report(Path({work!r}), Path({clip!r}), 0, {length}, ({width}, {height}))
print(time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def ping_pong_clip(folder: Path, length: int, size: int) -> tuple[Path, tuple[int, int]]:
    """The sample forward, backward, forward, ... until `length` frames, as a lossless MP4."""
    info = video.probe(REPO / "samples" / "realshort.mp4")
    width, height = video.output_size(info, size)
    frames = list(video.read_frames(info, 0, info.frame_count, (width, height)))
    (folder / "png").mkdir()
    order, forward = [], True
    while len(order) < length:
        order += list(range(len(frames))) if forward else list(range(len(frames) - 2, 0, -1))
        forward = not forward
    for position, index in enumerate(order[:length]):
        images.save_rgb(folder / "png" / f"{position:06d}.png", frames[index])
    clip = folder / "clip.mp4"
    video.encode_video(str(folder / "png" / "%06d.png"), 0, length, clip, info.fps, chroma="4:4:4")
    return clip, (width, height)


def measure(folder: Path, clip: Path, length: int, size: tuple[int, int], flow: str) -> dict:
    work = folder / f"work{length}"
    (work / "frames").mkdir(parents=True)
    for index in range(length):
        (work / "frames" / f"{index:06d}.png").write_bytes((folder / "png" / f"{index:06d}.png").read_bytes())
    script = WRITE_ONE.format(repo=str(REPO), flow=flow, work=str(work), clip=str(clip), length=length,
                              width=size[0], height=size[1])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seconds, peak_kib = done.stdout.split()[-2:]  # ru_maxrss is in KiB on Linux
    return {"frames": length, "peak MiB": int(peak_kib) / 1024, "seconds": float(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="12,48,144")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--flow", default="farneback", help="the report's evaluation flow (DeepFlow is ~20x slower)")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    lengths = sorted(int(n) for n in args.lengths.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        clip, size = ping_pong_clip(folder, lengths[-1], args.size)
        rows = [measure(folder, clip, length, size, args.flow) for length in lengths]
    table = markdown_table(rows, ["frames", "peak MiB", "seconds"])
    print(table)
    print(json.dumps(rows))
    if not args.print_only:
        append_results("report.html peak memory against clip length", table,
                       f"{size[0]}x{size[1]} frames, evaluation flow {args.flow}; each report in a fresh "
                       "process, peak = its own ru_maxrss")


if __name__ == "__main__":
    main()
