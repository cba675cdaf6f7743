"""The VGG16 feature extractor and its Caffe preprocessing."""
from typing import Sequence

import keras
import numpy as np

from .config import VGG16_LAYERS
from .weights import VGGWeights

# ImageNet mean in BGR order, the space VGG16's weights were trained in.
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# Pixel bounds in Caffe space, per channel: 0 and 255 shifted by the mean.
PIXEL_MIN = -IMAGENET_MEAN_BGR
PIXEL_MAX = 255.0 - IMAGENET_MEAN_BGR


def to_caffe(rgb: np.ndarray) -> np.ndarray:
    """RGB levels (H, W, 3), uint8 or float -> BGR float32 minus the ImageNet mean, as VGG16 expects."""
    return rgb[..., ::-1].astype(np.float32) - IMAGENET_MEAN_BGR


def from_caffe(image: np.ndarray) -> np.ndarray:
    """Inverse of `to_caffe`: RGB float32 levels clipped to 0-255, not rounded."""
    bgr = np.asarray(image, dtype=np.float32) + IMAGENET_MEAN_BGR
    return np.clip(bgr, 0, 255)[..., ::-1]


def feature_extractor(weights: VGGWeights, layers: Sequence[str], policy: str = "float32") -> keras.Model:
    """A model returning {layer: activations} as float32, computed only up to the deepest layer
    used, its convolutions under the Keras dtype `policy` (precision.vgg_policy)."""
    wanted = set(layers)
    deepest = max(VGG16_LAYERS.index(name) for name in wanted)
    inputs = keras.Input(shape=(None, None, 3))
    names = VGG16_LAYERS[: deepest + 1]
    x, outputs = inputs, {}
    for name, next_name in zip(names, names[1:] + ("",)):
        conv = keras.layers.Conv2D(weights.layers[name][0].shape[-1], 3, padding="same", activation="relu", name=name,
                                   dtype=policy)
        x = conv(x)
        conv.set_weights(list(weights.layers[name]))
        if name in wanted:
            outputs[name] = keras.ops.cast(x, "float32")  # Gram matrices and losses stay float32
        if next_name and _block(next_name) != _block(name):
            x = keras.layers.MaxPooling2D(2, name=f"{_block(name)}_pool", dtype=policy)(x)
    model = keras.Model(inputs, outputs, name="vgg16_features")
    model.trainable = False
    return model


def _block(layer: str) -> str:
    return layer.split("_")[0]
