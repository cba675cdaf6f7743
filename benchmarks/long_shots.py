"""Long shots (issue 9): does a render stay faithful over 144 and 200 frames?

    python benchmarks/long_shots.py [--size 96] [--clips pingpong,panzoom,VIDEO] [--root DIR] [--json J]

Makes two clips from the sample's real footage, both lossless:
- **ping-pong**: the sample forward, backward, forward, backward (144 frames): real motion, and
  content that comes back, so the chain can be compared with itself on the same source frames;
- **pan and zoom**: 200 frames of a slow pan across the sample's first frame (a real photograph)
  while the view zooms in to 1.6× and back out.
Renders each with the default preset and measures with `metrics.evaluate_clip` (DeepFlow, an
estimator the render does not use): E_warp ÷ the per-pair flow floor, structure mean and drift
(last quarter ÷ first quarter), texture energy of the first frame ÷ the next four's (a chain's
cold-started first frame should not look crisper than what follows) and of the last quarter ÷ the
first frame's, and the evaluations spent. Against a cold baseline (`--init cold`: content start, no temporal loss, the
first frame's budget) of the first, middle and last frames (--cold-frames): the chain's structure
and content + style loss on those frames ÷ the cold frames'. Prints a table; with --root the
renders are kept (a rerun resumes them).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown_table  # noqa: E402
from pipeline import metrics, video  # noqa: E402
from pipeline.evaluate import content_style, render_settings  # noqa: E402
from pipeline.workdir import WorkDir  # noqa: E402

SAMPLE = REPO / "samples" / "realshort.mp4"
STYLE = REPO / "samples" / "starry-night.jpg"
COLUMNS = ["clip", "frames", "E_warp ÷ floor", "structure", "drift", "texture first ÷ next 4", "texture last ÷ first",
           "structure ÷ cold", "content+style ÷ cold", "evaluations", "seconds"]


def sample_frames() -> list[np.ndarray]:
    info = video.probe(SAMPLE)
    return list(video.read_frames(info, 0, info.frame_count, (info.width, info.height)))


def pingpong(frames: list[np.ndarray], length: int = 144) -> list[np.ndarray]:
    """Forward, backward, forward, … turning at either end without repeating the turning frame."""
    order, step = [0], 1
    while len(order) < length:
        if not 0 <= order[-1] + step < len(frames):
            step = -step
        order.append(order[-1] + step)
    return [frames[i] for i in order]


def pan_and_zoom(photo: np.ndarray, length: int = 200, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    """A window with the photo's aspect pans left to right and back while zooming in to 1.6× and
    out again; each view is resampled to `size` (Lanczos when enlarging, area when shrinking)."""
    height, width = photo.shape[:2]
    shots = []
    for t in np.linspace(0.0, 1.0, length):
        zoom = 1.0 + 0.6 * np.sin(np.pi * t)  # 1 → 1.6 → 1
        view_w, view_h = width / zoom, height / zoom
        x = (width - view_w) * (0.5 - 0.5 * np.cos(2 * np.pi * t))  # left edge → right edge → left
        y = (height - view_h) * 0.5
        affine = np.array([[view_w / size[0], 0, x], [0, view_h / size[1], y]], np.float64)
        shrink = view_w > size[0]
        shots.append(cv2.warpAffine(photo, affine, size, flags=(cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
                                    | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT))
    return shots


def write_lossless(path: Path, frames: list[np.ndarray], fps: str = "30") -> None:
    height, width = frames[0].shape[:2]
    encoder = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{width}x{height}", "-r", fps, "-i", "-", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p",
         str(path)], stdin=subprocess.PIPE)
    for frame in frames:
        encoder.stdin.write(np.ascontiguousarray(frame).tobytes())
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise RuntimeError(f"ffmpeg could not write {path}")


def render(clip: Path, frames: int, size: int, root: Path, extra: list[str]) -> tuple[Path, float]:
    work = root / f"{clip.stem}.work"
    began = time.perf_counter()
    _cli(clip, size, work, "--end", str(frames), "-o", str(root / f"{clip.stem}.stylized.mp4"), *extra)
    return work, time.perf_counter() - began


def render_cold(clip: Path, indices: list[int], size: int, root: Path, extra: list[str]) -> Path:
    """The cold baseline of `indices`, one farm range each, into one work directory."""
    work = root / f"{clip.stem}.cold.work"
    for index in indices:
        _cli(clip, size, work, "--init", "cold", "--frames", f"{index}-{index}",
             "-o", str(root / f"{clip.stem}.cold.mp4"), *extra)
    return work


def _cli(clip: Path, size: int, work: Path, *flags: str) -> None:
    subprocess.run([sys.executable, str(REPO / "cli.py"), str(clip), "--style", str(STYLE), "--size", str(size),
                    "--workdir", str(work), "--quiet", *flags], check=True)


def against_cold(clip: Path, work: Path, cold: Path, indices: list[int]) -> dict:
    """Structure and content + style loss of the chain's frames ÷ the cold frames', per frame and mean."""
    chain, baseline = WorkDir(work), WorkDir(cold)
    size = chain.load(indices[0]).shape[1::-1]
    sources = {i: next(metrics.read_source(clip, i, 1, size, clip)) for i in indices}
    settings = render_settings(chain.read_manifest())
    structure = {i: (metrics.structure(sources[i], chain.load(i)), metrics.structure(sources[i], baseline.load(i)))
                 for i in indices}
    ours, theirs = chain.read_stats(indices), baseline.read_stats(indices)
    loss = {i: (content_style(ours[i], settings), content_style(theirs[i], settings)) for i in indices}
    return {
        "structure ÷ cold": float(np.mean([a for a, _ in structure.values()]) / np.mean([b for _, b in structure.values()])),
        "content+style ÷ cold": float(np.mean([a for a, _ in loss.values()]) / np.mean([b for _, b in loss.values()])),
        "cold_frames": {i: {"structure": structure[i], "content_style": loss[i]} for i in indices},
    }


def measure(clip: Path, work: Path, frames: int) -> dict:
    result = metrics.evaluate_clip(clip, work / "frames")
    texture = result["texture_energy_per_frame"]
    quarter = max(1, frames // 4)
    stats = WorkDir(work).read_stats(range(frames))
    return {
        "frames": frames, "E_warp ÷ floor": result["ratio_to_floor"], "structure": result["structure"],
        "drift": result["structure_drift"], "texture first ÷ next 4": float(texture[0] / np.mean(texture[1:5])),
        "texture last ÷ first": float(np.mean(texture[-quarter:]) / texture[0]),
        "evaluations": sum(s["evaluations"] for s in stats.values()),
        "structure_per_frame": result["structure_per_frame"], "texture_per_frame": texture,
    }


def cold_indices(spec: str, count: int) -> list[int]:
    named = {"first": 0, "middle": count // 2, "last": count - 1}
    return [named[part] if part in named else int(part) for part in spec.split(",") if part]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--clips", default="pingpong,panzoom", help="pingpong, panzoom, or paths of videos")
    parser.add_argument("--root", type=Path, help="keep the clips and renders here (a rerun resumes them)")
    parser.add_argument("--json", type=Path, help="also write every figure, per frame")
    parser.add_argument("--cold-frames", default="first,middle,last",
                        help="frames to render cold and compare with, e.g. 0,70,143; '' none")
    parser.add_argument("extra", nargs="*", help="more cli.py flags for the renders, after --")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="long-shots-"))
    root.mkdir(parents=True, exist_ok=True)
    frames = sample_frames()
    # The pan and zoom is made at the render's size (160x120 at least), so the zoom is not undone by a resize.
    view = (max(160, args.size), max(120, args.size * 3 // 4))
    makers = {"pingpong": lambda: pingpong(frames, 144), "panzoom": lambda: pan_and_zoom(frames[0], 200, view)}
    rows = []
    for name in args.clips.split(","):
        clip = root / f"{name}.mp4"
        if name not in makers:  # a video of the user's, as it is
            clip, name = Path(name), Path(name).stem
        elif not clip.exists():
            write_lossless(clip, makers[name]())
        count = video.probe(clip).frame_count
        work, seconds = render(clip, count, args.size, root, args.extra)
        row = {"clip": name, **measure(clip, work, count), "seconds": seconds}
        cold = cold_indices(args.cold_frames, count)
        if cold:
            row.update(against_cold(clip, work, render_cold(clip, cold, args.size, root, args.extra), cold))
        rows.append(row)
        print(markdown_table(rows[-1:], COLUMNS), flush=True)
    print(markdown_table(rows, COLUMNS))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
