"""How TensorFlow is set up: its CPU allocator, `precision` (VGG features in bfloat16 where
a GPU has it, float32 with a note elsewhere), and the optimizer 'auto' picks."""
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

import cli
from pipeline import losses, precision
from pipeline.config import chosen_optimizer, make_settings
from pipeline.precision import mixed_policy_for
from pipeline.stylize import Stylizer
from pipeline.vgg import feature_extractor, to_caffe

from conftest import SAMPLE_CLIP, SAMPLE_STYLE


def test_mixed_precision_is_taken_only_where_every_gpu_has_bfloat16():
    assert mixed_policy_for((("NVIDIA A100", (8, 0)), ("NVIDIA H200", (9, 0)))) == ("mixed_bfloat16", "")
    policy, note = mixed_policy_for(())
    assert policy == "float32" and "needs a GPU" in note
    policy, note = mixed_policy_for((("NVIDIA H200", (9, 0)), ("Tesla T4", (7, 5))))
    assert policy == "float32" and "Tesla T4 (7.5)" in note and "H200" not in note


def test_auto_is_the_device_lbfgs_on_any_machine(vgg_weights):
    settings = make_settings("default", {"size": 64})
    assert settings.optimizer == "auto"
    style = np.full((64, 64, 3), 128, np.uint8)
    assert Stylizer(settings, vgg_weights, style, (48, 64)).settings.optimizer == "lbfgs"  # a CPU, here
    assert chosen_optimizer("scipy-lbfgs") == "scipy-lbfgs" and chosen_optimizer("adam") == "adam"


def test_bfloat16_features_and_their_gradient_follow_float32s(vgg_weights):
    """The mixed policy's arithmetic, run here on the CPU: features within a few % of float32's,
    returned as float32, and a style-loss gradient pointing the same way."""
    layers = ("block1_conv1", "block3_conv1", "block4_conv2")
    image = tf.constant(to_caffe(np.random.default_rng(0).uniform(0, 255, (64, 64, 3)))[None])
    target = tf.random.stateless_uniform((1, 64, 64, 3), (1, 2), 0, 255) - 120
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        extractor = feature_extractor(vgg_weights, layers, policy)
        grams = {n: losses.gram(f) for n, f in extractor(target).items()}
        with tf.GradientTape() as tape:
            tape.watch(image)
            features = extractor(image)
            loss = tf.add_n([losses.style_loss(features[n], grams[n]) for n in layers])
        results[policy] = (features, tape.gradient(loss, image))
    (exact, exact_gradient), (mixed, mixed_gradient) = results["float32"], results["mixed_bfloat16"]
    for name in layers:
        assert mixed[name].dtype == tf.float32
        error = np.linalg.norm(mixed[name] - exact[name]) / np.linalg.norm(exact[name])
        assert 0 < error < 0.03, name  # not the same arithmetic, but close to it
    a, b = np.ravel(exact_gradient), np.ravel(mixed_gradient)
    assert np.all(np.isfinite(b)) and a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.98


def test_mixed_precision_on_a_cpu_renders_in_float32_and_says_so(tmp_path, capsys):
    precision._mixed_policy.cache_clear()  # the note is printed once per process
    output = tmp_path / "out.mp4"
    args = [SAMPLE_CLIP, "--style", SAMPLE_STYLE, "-o", output, "--end", 1, "--size", 64,
            "--first-frame-iterations", 3, "--quiet", "--precision", "mixed"]
    assert cli.main([str(a) for a in args]) == 0
    assert "precision 'mixed' needs a GPU; rendering in float32" in capsys.readouterr().err
    assert output.is_file()


def test_tensorflow_gets_the_caching_cpu_allocator_unless_the_user_chose_one():
    """pipeline sets TF_CPU_ALLOCATOR_USE_BFC before TensorFlow starts (benchmarks/host_churn.py)."""
    probe = [sys.executable, "-c", "import os, pipeline; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"]
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    chosen = subprocess.run(probe, env=environment, capture_output=True, text=True, check=True).stdout.strip()
    kept = subprocess.run(probe, env={**environment, "TF_CPU_ALLOCATOR_USE_BFC": "false"}, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert (chosen, kept) == ("true", "false")
