import dataclasses

import cv2
import numpy as np
import pytest

from pipeline.config import make_settings
from pipeline.images import load_rgb
from pipeline.stylize import Stylizer, TemporalGuide, style_image_size

from conftest import SAMPLE_STYLE

SIZE = (48, 64)  # (height, width): tiny, but above VGG16's 32-pixel minimum


@pytest.fixture(scope="module")
def content():
    painting = load_rgb(SAMPLE_STYLE)
    return cv2.resize(painting[100:500, 200:700], SIZE[::-1], interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def style():
    return cv2.resize(load_rgb(SAMPLE_STYLE), (160, 106), interpolation=cv2.INTER_AREA)


def settings(**overrides):
    return make_settings("default", {"stop_window": 0, **overrides})


def test_style_image_keeps_its_aspect_ratio():
    assert style_image_size((712, 1071), (240, 320), 1.0) == (213, 320)
    assert style_image_size((712, 1071), (240, 320), 0.5) == (106, 160)
    assert min(style_image_size((8, 8), (240, 320), 1.0)) >= 32  # tiny styles grow to VGG's minimum
    assert style_image_size((8, 8), (240, 320), 1.0) == (320, 320)


@pytest.mark.parametrize("style_shape", [(16, 16000), (16000, 16), (20, 3000)])
def test_long_thin_style_image_is_capped(style_shape):
    """VGG16's 32 px short side alone would make 16x16000 a 32x32000 image (2 GB of activations)."""
    height, width = style_image_size(style_shape, SIZE, 1.0)
    assert height * width <= 4 * SIZE[0] * SIZE[1]
    assert min(height, width) >= 32
    assert (height > width) == (style_shape[0] > style_shape[1])  # still long the same way


def test_capped_style_image_is_named_in_one_warning(vgg_weights, capsys):
    thin = np.full((16, 16000, 3), 128, np.uint8)
    Stylizer(settings(), vgg_weights, thin, SIZE, style_name="thin.png")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: thin.png: ")
    assert "16000x16" in lines[0] and "32000x32" in lines[0]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimization_lowers_the_loss_and_stays_in_range(vgg_weights, content, style, optimizer):
    stylizer = Stylizer(settings(optimizer=optimizer, learning_rate=10.0), vgg_weights, style, SIZE)
    seen = []
    result = stylizer.stylize(content, content, budget=12, on_iterate=seen.append)
    start_loss = stylizer.evaluate(stylizer_input(content))[0]
    assert result.image.dtype == np.uint8 and result.image.shape == (*SIZE, 3)
    assert result.losses["total"] < 0.8 * start_loss
    assert result.evaluations <= 14 and result.stop_reason == "budget"
    assert [it.loss for it in seen] == sorted((it.loss for it in seen), reverse=True) or optimizer == "adam"
    assert np.abs(result.image.astype(int) - content).mean() > 1  # it actually changed the picture


def stylizer_input(rgb):
    from pipeline.vgg import to_caffe

    return to_caffe(rgb)[None]


def test_early_stop_when_the_loss_settles(vgg_weights, content, style):
    # A tolerance no iteration can meet stops after the first full window.
    stylizer = Stylizer(settings(stop_window=3, stop_tolerance=1e6), vgg_weights, style, SIZE)
    result = stylizer.stylize(content, content, budget=50)
    assert result.stop_reason == "converged"
    assert result.evaluations < 20


def test_temporal_loss_reaches_the_image_and_spares_masked_pixels(vgg_weights, content, style):
    """With only the temporal term, reliable pixels move to the warped frame and masked ones don't move."""
    only_temporal = settings(content_weight=0.0, style_weight=0.0, tv_weight=0.0, temporal_weight=1.0)
    stylizer = Stylizer(only_temporal, vgg_weights, style, SIZE)
    warped = np.full((*SIZE, 3), 200, np.uint8)
    reliability = np.zeros(SIZE, np.float32)
    reliability[:, : SIZE[1] // 2] = 1.0
    result = stylizer.stylize(content, content, budget=20, guide=TemporalGuide(warped, reliability))
    left, right = result.image[:, : SIZE[1] // 2].astype(int), result.image[:, SIZE[1] // 2 :]
    assert np.abs(left - 200).max() <= 2
    np.testing.assert_array_equal(right, content[:, SIZE[1] // 2 :])


def test_temporal_weight_zero_ignores_the_guide(vgg_weights, content, style):
    no_temporal = settings(content_weight=0.0, style_weight=0.0, tv_weight=0.0, temporal_weight=0.0)
    stylizer = Stylizer(dataclasses.replace(no_temporal), vgg_weights, style, SIZE)
    guide = TemporalGuide(np.full((*SIZE, 3), 200, np.uint8), np.ones(SIZE, np.float32))
    result = stylizer.stylize(content, content, budget=3, guide=guide)
    assert result.losses["temporal"] == 0.0
