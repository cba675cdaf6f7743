"""Fine detail: what a Gaussian blur removes, its energy window by window, and that energy given
back to an image that lost some of it.

Two steps of a render are low-pass filters. A sub-pixel warp attenuates what is finest. A mean of
two images whose strokes lie in different places halves their detail's energy. Scaling the
detail back up, window by window, to the energy it had keeps the image's broad colours and the
detail's own shapes, and puts no detail where there was none."""
from __future__ import annotations

import cv2
import numpy as np


def split(image: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The broad colours (a Gaussian blur of `sigma` px) and the detail (the rest) of an image."""
    image = image.astype(np.float32)
    broad = cv2.GaussianBlur(image, (0, 0), sigma)
    return broad, image - broad


def energy(image: np.ndarray, sigma: float, window: float) -> np.ndarray:
    """The energy of the image's detail at `sigma`, summed over the channels, averaged over
    Gaussian windows of `window` px."""
    return _windowed(split(image, sigma)[1], window)


def with_energy(image: np.ndarray, wanted: np.ndarray, sigma: float, window: float, max_gain: float) -> np.ndarray:
    """`image` with its detail at `sigma` scaled up, window by window, to the `wanted` energy:
    never down, and never by more than `max_gain` (where two near-flat windows are compared, the
    ratio means little). Float32, clipped to 0-255."""
    broad, fine = split(image, sigma)
    gain = np.clip(np.sqrt(wanted / np.maximum(_windowed(fine, window), 1e-6)), 1.0, max_gain)
    return np.clip(broad + gain[..., None] * fine, 0.0, 255.0).astype(np.float32)


def _windowed(fine: np.ndarray, window: float) -> np.ndarray:
    return cv2.GaussianBlur(np.square(fine).sum(axis=-1), (0, 0), window)
