"""The device L-BFGS's own time: milliseconds per evaluation outside the loss, by history size.

    python benchmarks/optimizer_overhead.py [--width 256] [--height 192] [--evaluations 100]
                                            [--history 1,20,40] [--record]

The loss is a near-free quartic bowl over the image (a millisecond or two, against 180-330 ms
for VGG16 at 256x192 on the 2-core CPUs measured), so almost all of the time is the optimizer's:
H·g over the stored pairs, the line search's arithmetic, the copies into its buffers, and the
host's loop over chunks. One untimed frame first traces the graphs. Divide by a VGG16 evaluation's
time (benchmarks/optimizers.py, "ms / evaluation") for the share it adds to a real frame.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown_table, publish  # noqa: E402
from pipeline import device_optimizer  # noqa: E402
from pipeline.config import make_settings  # noqa: E402

COLUMNS = ["history pairs", "evaluations", "iterations", "ms / evaluation outside the loss", "ms / evaluation in the loss"]


def quartic_bowl(shape: tuple[int, ...]):
    """A loss of the image with pixel-wise curvature spread over 300x, so L-BFGS needs its
    history, and a minimum inside the pixel box."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    target = tf.constant(rng.uniform(-100, 100, shape).astype(np.float32))
    scale = tf.constant(rng.uniform(0.01, 3.0, shape).astype(np.float32))
    pixels = float(np.prod(shape))

    def loss_and_gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            r = (images - target) * scale / 100.0
            total = tf.reduce_sum(r * r + 0.1 * r ** 4) / pixels
        zero = tf.zeros_like(total)
        return total, {"content": total, "style": zero, "tv": zero, "temporal": zero}, tape.gradient(total, images)
    return loss_and_gradient


def one_frame(row, start: np.ndarray, budget: int) -> tuple[float, int]:
    """Wall seconds and iterations of one frame, driven as stylize._on_device drives it."""
    row.reset(start)
    began, status, iterations = time.perf_counter(), "running", 0
    while status == "running":
        chunk = row.run(budget, [])
        status, iterations = chunk.status, iterations + len(chunk.evaluations)
    return time.perf_counter() - began, iterations


def measure(history: int, shape: tuple[int, ...], budget: int) -> dict:
    # The history's size is read from the module when the optimizer is made.
    device_optimizer.HISTORY = history
    settings = make_settings("default", {"optimizer": "lbfgs", "stop_window": 0, "first_frame_iterations": budget})
    row = device_optimizer.DeviceOptimizer(device_optimizer.one_row(quartic_bowl(shape)), shape, settings).row()
    start = np.zeros(shape, np.float32)
    one_frame(row, start, budget)  # traces the graphs
    wall, iterations = one_frame(row, start, budget)
    inside = row.evaluation_seconds
    return {"history pairs": history, "evaluations": row.evaluations, "iterations": iterations,
            "ms / evaluation outside the loss": 1000 * (wall - inside) / row.evaluations,
            "ms / evaluation in the loss": 1000 * inside / row.evaluations}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--history", default="1,20,40", help="history sizes (pairs) to compare")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    shape = (1, args.height, args.width, 3)
    rows = [measure(int(history), shape, args.evaluations) for history in args.history.split(",")]
    table = markdown_table(rows, COLUMNS)
    note = (f"device L-BFGS on a quartic bowl at {args.width}x{args.height}, one frame of "
            f"{args.evaluations} evaluations per history size, after an untimed one")
    publish("Device L-BFGS overhead", table, note, args.record)


if __name__ == "__main__":
    main()
