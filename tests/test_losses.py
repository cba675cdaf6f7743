import numpy as np
import pytest
import tensorflow as tf

from pipeline import losses


def test_gram_by_hand():
    # two positions, two channels: f = [[1, 2], [3, 4]] -> F^T F = [[10, 14], [14, 20]], / (2 positions * 2 channels)
    features = tf.constant([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    np.testing.assert_allclose(losses.gram(features).numpy(), [[2.5, 3.5], [3.5, 5.0]])


def test_gram_does_not_depend_on_image_size():
    rng = np.random.default_rng(0)
    tile = rng.random((1, 4, 4, 3)).astype(np.float32)
    bigger = np.tile(tile, (1, 3, 2, 1))
    np.testing.assert_allclose(losses.gram(tf.constant(bigger)), losses.gram(tf.constant(tile)), rtol=1e-5)


def test_content_loss_is_relative_to_the_target():
    target = tf.constant(np.full((1, 2, 2, 3), 4.0, np.float32))
    assert losses.content_loss(target, target).numpy() == pytest.approx(0.0)
    assert losses.content_loss(tf.zeros_like(target), target).numpy() == pytest.approx(1.0)
    assert losses.content_loss(target * 2, target).numpy() == pytest.approx(1.0)


def test_style_loss_is_relative_to_the_style_gram():
    features = tf.constant(np.random.default_rng(1).random((1, 5, 5, 4)).astype(np.float32))
    style_gram = losses.gram(features)
    assert losses.style_loss(features, style_gram).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.style_loss(tf.zeros_like(features), style_gram).numpy() == pytest.approx(1.0)
    # Same relative error whatever the magnitude of the layer's activations.
    assert losses.style_loss(features * 100, style_gram * 100**2).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.style_loss(2 * features, style_gram).numpy() == pytest.approx(9.0, rel=1e-5)


def test_total_variation_of_a_step():
    flat = np.zeros((1, 4, 4, 3), np.float32)
    assert losses.total_variation(tf.constant(flat)).numpy() == 0.0
    step = flat.copy()
    step[:, :, 2:, :] = 255.0  # one column boundary of height 4: 4 of the 12 horizontal pairs differ by 1
    assert losses.total_variation(tf.constant(step)).numpy() == pytest.approx(4 * 3 / (4 * 3 * 3))


def test_temporal_gradient_pulls_reliable_pixels_toward_the_warped_frame_only():
    image = tf.constant(np.full((1, 2, 2, 3), 10.0, np.float32))
    warped = tf.constant(np.full((1, 2, 2, 3), 50.0, np.float32))
    reliability = tf.constant(np.array([1.0, 0.0, 1.0, 0.0], np.float32).reshape(1, 2, 2, 1))
    with tf.GradientTape() as tape:
        tape.watch(image)
        loss = losses.temporal_loss(image, warped, reliability)
    gradient = tape.gradient(loss, image).numpy()[0]
    assert loss.numpy() == pytest.approx(0.5 * 40.0**2 / 255.0**2)
    assert (gradient[0, 0] < 0).all() and (gradient[1, 0] < 0).all()  # descent moves 10 toward 50
    assert (gradient[0, 1] == 0).all() and (gradient[1, 1] == 0).all()  # unreliable: no pull at all
