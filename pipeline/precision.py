"""The number format of the VGG16 features (`precision`): float32, or bfloat16 where a GPU has it.

VGG16's convolutions are nearly all of an evaluation's work. On GPUs with bfloat16 tensor cores
(NVIDIA compute capability 8.0, Ampere, and later) Keras's "mixed_bfloat16" policy runs them at
half the memory traffic, while the image, the Gram matrices and every loss stay float32 (the
features are cast back before the losses). bfloat16 keeps float32's exponent range, so the
small gradients of normalized losses do not underflow. float16 would need loss scaling for
that and is not offered. A CPU or an older GPU renders in float32, with a note saying so.
"""
from __future__ import annotations

import functools
import sys

PRECISIONS = ("float32", "mixed")
BFLOAT16_CAPABILITY = (8, 0)


def vgg_policy(precision: str) -> str:
    """The Keras dtype policy of the VGG layers for `precision`, on the GPUs TensorFlow sees."""
    if precision != "mixed":
        return "float32"
    return _mixed_policy(tuple(_gpu_capabilities()))


@functools.lru_cache(maxsize=None)  # one note per process, however many stylizers it makes
def _mixed_policy(gpus: tuple[tuple[str, tuple[int, int]], ...]) -> str:
    policy, note = mixed_policy_for(gpus)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return policy


def mixed_policy_for(gpus: tuple[tuple[str, tuple[int, int]], ...]) -> tuple[str, str]:
    """("mixed_bfloat16", "") when every GPU (name, compute capability) has bfloat16, else
    ("float32", why not)."""
    if not gpus:
        return "float32", "precision 'mixed' needs a GPU; rendering in float32 on the CPU"
    lacking = [f"{name} ({major}.{minor})" for name, (major, minor) in gpus if (major, minor) < BFLOAT16_CAPABILITY]
    if lacking:
        return "float32", (f"precision 'mixed' needs bfloat16, compute capability 8.0 or later; "
                           f"{', '.join(lacking)} lacks it: rendering in float32")
    return "mixed_bfloat16", ""


def _gpu_capabilities() -> list[tuple[str, tuple[int, int]]]:
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", gpu.name), tuple(details.get("compute_capability", (0, 0)))))
    return found
