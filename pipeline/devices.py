"""Which device renders, and how TensorFlow takes its memory.

Both must be settled before TensorFlow first runs: it refuses memory settings after that.
"""
from __future__ import annotations

import tensorflow as tf

from .config import chosen_optimizer


def take_gpu_memory_as_needed() -> None:
    """Not all of each GPU's memory at start (TensorFlow's default): a render shares the card
    with other renders, Ray workers and the compositing app. Once TensorFlow has used a GPU it
    keeps what it was given (a second render in one process), so a refusal then is fine."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            return


def rendering_device(optimizer: str | None = None) -> str:
    """What TensorFlow will render on, for the log's first line: a render that silently fell back
    to the CPU takes hours where minutes were expected. With the `optimizer` setting, which one runs."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        line = "rendering on the CPU (no GPU visible to TensorFlow; on Linux with an NVIDIA driver: pip install -e \".[gpu]\")"
    else:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        line = "rendering on " + ", ".join(names)
    if optimizer is None:
        return line
    return f"{line}; optimizer {chosen_optimizer(optimizer)}{' (auto)' if optimizer == 'auto' else ''}"
