"""Iteration throughput: ms per loss evaluation (forward + input gradient) and achieved GFLOP/s,
next to a float32 matrix product measured in the same run (the ratio is the figure of merit).
With --batches, also ms per image when several chains' images are evaluated as one batch (`chains`).

    python benchmarks/iteration_speed.py [--sizes 256,512] [--repeats 10] [--batches 2,4]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import append_results, markdown_table  # noqa: E402
from pipeline.batch import BatchedEvaluations  # noqa: E402
from pipeline.config import VGG16_LAYERS, make_settings  # noqa: E402
from pipeline.stylize import Stylizer  # noqa: E402
from pipeline.vgg import to_caffe  # noqa: E402
from pipeline.weights import load_vgg16_weights  # noqa: E402

CHANNELS = {"block1": 64, "block2": 128, "block3": 256, "block4": 512, "block5": 512}


def forward_flops(height: int, width: int, deepest: str) -> float:
    """Multiply-adds ×2 of VGG16's 3×3 convolutions up to `deepest` (pooling halves the size)."""
    flops, channels_in, previous_block = 0.0, 3, "block1"
    for name in VGG16_LAYERS[: VGG16_LAYERS.index(deepest) + 1]:
        block = name.split("_")[0]
        if block != previous_block:
            height, width, previous_block = height // 2, width // 2, block
        channels_out = CHANNELS[block]
        flops += 2 * height * width * channels_in * channels_out * 9
        channels_in = channels_out
    return flops


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = (np.random.default_rng(0).random((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - began) / 1e9


def evaluation_seconds(stylizer: Stylizer, image: np.ndarray, repeats: int) -> float:
    stylizer.evaluate(image)  # traces the graph
    began = time.perf_counter()
    for _ in range(repeats):
        stylizer.evaluate(image)
    return (time.perf_counter() - began) / repeats


def batched_seconds_per_image(stylizer: Stylizer, image: np.ndarray, chains: int, repeats: int) -> float:
    batch = BatchedEvaluations(stylizer, chains)
    images, slots = np.concatenate([image] * chains), list(range(chains))
    batch.evaluate_rows(images, slots)  # traces the graph
    began = time.perf_counter()
    for _ in range(repeats):
        batch.evaluate_rows(images, slots)
    return (time.perf_counter() - began) / repeats / chains


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batches", default="", help="chains per batch to time, e.g. 2,4")
    args = parser.parse_args(argv)

    settings = make_settings(args.preset)
    weights = load_vgg16_weights()
    deepest = max(settings.content_layers + settings.style_layers, key=VGG16_LAYERS.index)
    rng = np.random.default_rng(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        frame = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        stylizer = Stylizer(settings, weights, frame, (size, size))
        stylizer.stylize(frame, frame, budget=1)  # sets targets
        seconds = evaluation_seconds(stylizer, to_caffe(frame)[None], args.repeats)
        # Forward pass plus the gradient with respect to the input: about twice the forward work.
        gflops = 2 * forward_flops(size, size, deepest) / seconds / 1e9
        matmul = matmul_gflops()
        rows.append({"size": f"{size}×{size}", "batch": 1, "ms / evaluation": seconds * 1000, "GFLOP/s": gflops,
                     "matmul GFLOP/s": matmul, "ratio": gflops / matmul})
        print(rows[-1], flush=True)
        for chains in (int(b) for b in args.batches.split(",") if b):
            per_image = batched_seconds_per_image(stylizer, to_caffe(frame)[None], chains, args.repeats)
            rows.append({"size": f"{size}×{size}", "batch": chains, "ms / evaluation": per_image * 1000,
                         "GFLOP/s": gflops * seconds / per_image, "ratio": gflops * seconds / per_image / matmul})
            print(rows[-1], flush=True)
    table = markdown_table(rows, ["size", "batch", "ms / evaluation", "GFLOP/s", "matmul GFLOP/s", "ratio"])
    print(table)
    append_results("Iteration throughput", table,
                   f"VGG16 up to {deepest} (layers of preset `{args.preset}`), forward + input gradient, "
                   f"graph mode, mean of {args.repeats}; matmul: NumPy float32 2048×2048. Batch N: N images "
                   "in one evaluation (`chains`), ms per image.")


if __name__ == "__main__":
    main()
