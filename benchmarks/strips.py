"""Labelled strips of one stylized frame under an artist's control, for README and the closing notes.

    python benchmarks/strips.py style-scale -o docs/style_scale.png          # style_scale 0.5, 1, 2
    python benchmarks/strips.py keep-colors -o /tmp/looks-data/keep.png      # off, luminance, histogram
    python benchmarks/strips.py blend -o /tmp/looks-data/blend.png           # kandinsky, 50/50, starry night

Each tile is the same source frame (samples/realshort.mp4, frame 0 by default) optimized cold from
the content for `--iterations` loss evaluations at `--size` px with the default preset otherwise;
the first tile is the source. A PNG is written with a 256-colour palette when `--palette` is given
(small enough to commit under docs/).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline import images, video  # noqa: E402
from pipeline.config import make_settings  # noqa: E402
from pipeline.stylize import StyleImage, Stylizer  # noqa: E402
from pipeline.weights import load_vgg16_weights  # noqa: E402

KANDINSKY, STARRY = REPO / "samples" / "kandinsky.jpg", REPO / "samples" / "starry-night.jpg"
LABEL_HEIGHT = 22


def variants(kind: str) -> list[tuple[str, dict, list[tuple[Path, float]]]]:
    """(label, setting overrides, styles with weights) of each tile."""
    if kind == "style-scale":
        return [(f"style_scale {s:g}", {"style_scale": s}, [(KANDINSKY, 1.0)]) for s in (0.5, 1.0, 2.0)]
    if kind == "keep-colors":
        return [(f"keep_colors {mode or 'off'}" if mode == "" else mode, {"keep_colors": mode}, [(KANDINSKY, 1.0)])
                for mode in ("", "luminance", "histogram")]
    if kind == "blend":
        return [("kandinsky", {}, [(KANDINSKY, 1.0)]),
                ("50/50 blend", {}, [(KANDINSKY, 0.5), (STARRY, 0.5)]),
                ("starry night", {}, [(STARRY, 1.0)])]
    raise SystemExit(f"unknown strip {kind!r}")


def labelled(rgb: np.ndarray, text: str) -> np.ndarray:
    band = np.full((LABEL_HEIGHT, rgb.shape[1], 3), 255, np.uint8)
    scale = 0.45 * min(1.0, rgb.shape[1] / 200)  # smaller type on small tiles, so a label fits
    cv2.putText(band, text, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([rgb, band])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("style-scale", "keep-colors", "blend"))
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--video", type=Path, default=REPO / "samples" / "realshort.mp4")
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--palette", action="store_true", help="write a 256-colour PNG (about a third the bytes)")
    args = parser.parse_args()

    info = video.probe(args.video)
    width, height = video.output_size(info, args.size)
    source = next(video.read_frames(info, args.frame, args.frame + 1, (width, height)))
    weights = load_vgg16_weights()
    tiles = [labelled(source, "source")]
    for label, overrides, styles in variants(args.kind):
        settings = dataclasses.replace(make_settings("default", {"size": args.size, "stop_window": 0}), **overrides)
        blend = [StyleImage(images.load_rgb(path), weight, str(path)) for path, weight in styles]
        stylizer = Stylizer(settings, weights, blend, (height, width), colour_reference=source)
        result = stylizer.stylize(source, source, args.iterations)
        print(f"{label}: loss {result.losses['total']:.3g} after {result.evaluations} evaluations, "
              f"{result.seconds:.0f} s", file=sys.stderr)
        tiles.append(labelled(result.image, label))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.hstack([part for tile in tiles for part in (tile, gap)][:-1])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.palette:
        from PIL import Image

        Image.fromarray(strip).quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(args.output, optimize=True)
    else:
        images.save_rgb(args.output, strip)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)", file=sys.stderr)


if __name__ == "__main__":
    main()
