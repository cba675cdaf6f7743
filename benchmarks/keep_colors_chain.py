"""keep_colors "luminance": should the warm-start chain continue from the colour-kept frame (what is
stored and encoded) or from the full-colour optimum? Both encode the colour-kept frames; this
measures their E_warp (DeepFlow, not the render's DIS) and structure, next to keep_colors off.

    python benchmarks/keep_colors_chain.py [--size 128] [--frames 12] [--append]

The chain is chain.stylize_frame's (init previous-warped, temporal loss on the warped previous
frame) run in memory, so the full-colour variant needs no second image per frame on disk.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline import flow, images, metrics, video  # noqa: E402
from pipeline.config import make_settings  # noqa: E402
from pipeline.stylize import Stylizer, TemporalGuide, keep_source_chroma  # noqa: E402
from pipeline.weights import load_vgg16_weights  # noqa: E402

VARIANTS = {
    "off": "keep_colors off (reference)",
    "chain kept": "luminance, chain from the colour-kept frame (what the pipeline does)",
    "chain full": "luminance, chain from the full-colour optimum, colour kept only for output",
}


def chain(stylizer: Stylizer, sources: list[np.ndarray], first: np.ndarray, variant: str, settings) -> list[np.ndarray]:
    """The encoded frames of one variant; `first` is frame 0's full-colour optimum (the same for all)."""
    shown, carried = [], None  # carried: what the next frame warm-starts from
    for index, source in enumerate(sources):
        if index == 0:
            full = first
        else:
            warped, reliability = flow.temporal_guide(sources[index - 1], source, carried, settings.flow)
            guide = TemporalGuide(warped, reliability)
            full = stylizer.stylize(source, guide.warped, settings.frame_iterations, guide).image
        kept = full if variant == "off" else images.levels_to_uint8(keep_source_chroma(full, source))
        shown.append(kept)
        carried = full if variant == "chain full" else kept
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--style", type=Path, default=REPO / "samples" / "kandinsky.jpg")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--first-frame-iterations", type=int, help="default: the preset's")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()

    overrides = {"size": args.size}
    if args.first_frame_iterations:
        overrides["first_frame_iterations"] = args.first_frame_iterations
    settings = make_settings("default", overrides)  # keep_colors off: the variants apply it
    info = video.probe(args.video)
    width, height = video.output_size(info, args.size)
    sources = list(video.read_frames(info, 0, args.frames, (width, height)))
    stylizer = Stylizer(settings, load_vgg16_weights(), images.load_rgb(args.style), (height, width))
    first = stylizer.stylize(sources[0], sources[0], settings.first_frame_iterations).image
    rows = []
    for variant, meaning in VARIANTS.items():
        shown = chain(stylizer, sources, first, variant, settings)
        measures = metrics.measure_clip(sources, shown)
        rows.append({"variant": variant, "meaning": meaning,
                     "E_warp": measures.stylized.mean,
                     "÷ flow floor": metrics.ratio(measures.stylized.mean, measures.floor.mean),
                     "structure": measures.structure_mean})
        print(rows[-1], file=sys.stderr)
    table = markdown_table(rows, ["variant", "meaning", "E_warp", "÷ flow floor", "structure"])
    print(table)
    if args.append:
        append_results("keep_colors luminance: which frame the chain continues from", table,
                       f"{args.frames} frames of {args.video.name} at {width}x{height}, style {args.style.name}, "
                       f"default preset, first frame {settings.first_frame_iterations} evaluations. E_warp of the encoded frames with DeepFlow (the render uses DIS).")


if __name__ == "__main__":
    main()
