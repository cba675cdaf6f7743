"""The loss terms, each normalized so that it is O(1) at any frame size.

Images are (1, H, W, 3) tensors in Caffe space (BGR minus the ImageNet mean, 0-255 range);
features are (1, H, W, C) VGG activations.
"""
import tensorflow as tf


def gram(features: tf.Tensor) -> tf.Tensor:
    """Channel correlations, averaged over positions and channels so sizes compare."""
    positions = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], features.dtype)
    channels = tf.cast(tf.shape(features)[3], features.dtype)
    flat = tf.reshape(features, (-1, tf.shape(features)[3]))
    return tf.matmul(flat, flat, transpose_a=True) / (positions * channels)


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Squared feature error relative to the target's mean square."""
    return tf.reduce_mean(tf.square(features - target)) / (tf.reduce_mean(tf.square(target)) + 1e-8)


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """Squared Gram error relative to the style Gram's squared norm: raw values differ
    by orders of magnitude between layers, relative ones do not."""
    return tf.reduce_sum(tf.square(gram(features) - target_gram)) / (tf.reduce_sum(tf.square(target_gram)) + 1e-8)


def total_variation(image: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of neighbouring pixels, in [0, 1] pixel units."""
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return (tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))) / 255.0**2


def temporal_loss(image: tf.Tensor, warped: tf.Tensor, reliability: tf.Tensor) -> tf.Tensor:
    """Ruder et al. 2016: (1/D) Σ c·(x − ω)², pixels in [0, 1]; c (1, H, W, 1) is 0 where the
    flow is unreliable, so occluded pixels are free to change."""
    return tf.reduce_mean(reliability * tf.square(image - warped)) / 255.0**2
