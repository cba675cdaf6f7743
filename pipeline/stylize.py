"""One frame: content targets + a start image (+ a temporal guide) -> a stylized frame.

A `Stylizer` is built once per clip size and style: the loss graph is traced once and every
per-frame target is fed through a variable, so later frames cost no retracing.

The style is one painting or a blend: each painting is scaled by style_scale on its own and its
Gram matrices are mixed by weight. Colour preservation (Gatys et al. 2016, "Preserving color in
neural artistic style transfer") comes in two kinds, `keep_colors`:
- "histogram": each style image is first given the colour statistics (RGB mean and covariance) of
  a reference frame, the render's first, by one linear map (their §2.2);
- "luminance": the optimized frame keeps its luminance and takes the chroma of its own source
  frame (YCrCb), so the colours move exactly as the source's do.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
import scipy.optimize
import tensorflow as tf

from . import images, losses
from .device_optimizer import DeviceOptimizer, Row, loss_settled, one_row
from .events import Iterate, ignore
from .precision import vgg_policy
from .config import VGG_MIN_SIDE, Settings, chosen_optimizer
from .vgg import PIXEL_MAX, PIXEL_MIN, feature_extractor, from_caffe, to_caffe
from .weights import VGGWeights


@dataclass(frozen=True)
class TemporalGuide:
    """The previous stylized frame warped onto this one, and where that warp can be trusted."""

    warped: np.ndarray  # RGB (H, W, 3), uint8 or float32 in 0-255
    reliability: np.ndarray  # float32 (H, W), 1 where the flow is reliable
    weight: float = 1.0  # scales the temporal weight for this guide (a stitch ramps two of them)


def combine_guides(*guides: TemporalGuide) -> TemporalGuide:
    """One guide pulling as all of `guides` together: Σ wᵢcᵢ(x − ωᵢ)² = (Σ wᵢcᵢ)(x − ω̄)² + const,
    ω̄ the wᵢcᵢ-weighted mean of the ωᵢ, so the loss differs by a constant and the gradient not
    at all. The single temporal term of the loss graph then serves a frame with two neighbours."""
    pull = [guide.weight * guide.reliability.astype(np.float32) for guide in guides]
    total = np.sum(pull, axis=0)
    pulled = np.sum([c[..., None] * guide.warped.astype(np.float32) for c, guide in zip(pull, guides)], axis=0)
    fallback = np.mean([guide.warped.astype(np.float32) for guide in guides], axis=0)  # where nothing pulls
    mean = np.where(total[..., None] > 0, pulled / np.maximum(total, 1e-12)[..., None], fallback)
    return TemporalGuide(mean.astype(np.float32), total.astype(np.float32))


def long_term_guide(guides: list[TemporalGuide]) -> TemporalGuide:
    """Ruder et al.'s long-term temporal loss as one guide: `guides` come from earlier frames,
    nearest first, each warped straight onto this frame; each pulls only where no nearer one is
    reliable, c'ⱼ = max(cⱼ − Σ_{k<j} cₖ, 0). So a region the previous frame could not see (it
    was occluded, or off screen) is held to what it looked like when it was last seen. Where no
    frame is reliable the guide shows the nearest frame's warp, with no pull."""
    nearer = np.zeros_like(guides[0].reliability, dtype=np.float32)
    masked = []
    for guide in guides:
        masked.append(TemporalGuide(guide.warped, np.maximum(guide.reliability - nearer, 0.0), guide.weight))
        nearer = nearer + guide.reliability
    combined = combine_guides(*masked)
    pulled = combined.reliability[..., None] > 0
    warped = np.where(pulled, combined.warped, guides[0].warped.astype(np.float32))
    return TemporalGuide(warped.astype(np.float32), combined.reliability)


@dataclass(frozen=True)
class FrameResult:
    levels: np.ndarray  # RGB float32 0-255, unrounded: the optimizer's result (the work directory keeps 16 bits)
    losses: dict[str, float]  # unweighted terms and the weighted total
    evaluations: int
    stop_reason: str  # "converged", "budget" or the optimizer's own message
    seconds: float = 0.0
    # Per iteration: (evaluations so far, total loss, loss without the temporal term), so runs
    # with and without a temporal loss can be compared by the quality they reach.
    trace: tuple[tuple[int, float, float], ...] = ()
    start: str = ""  # how the chain started it: "cold", "warm", or "cold: scene cut (…)"
    coarse_evaluations: int = 0  # a cold frame's evaluations at its coarser sizes (stylize_cold)

    @property
    def image(self) -> np.ndarray:
        """RGB uint8: the result rounded, as 8-bit stylization continues from it."""
        return images.levels_to_uint8(self.levels)


@dataclass(frozen=True)
class StyleImage:
    """One painting of a (blended) style: RGB, its share of the Gram targets, its name in warnings."""

    rgb: np.ndarray
    weight: float = 1.0
    name: str = "style"


def match_colour_statistics(style_rgb: np.ndarray, reference_rgb: np.ndarray) -> np.ndarray:
    """The style image under the affine map x -> A x + b that gives its pixels the mean and
    covariance of the reference's: A = Σr^½ Σs^-½ (symmetric square roots), b = μr - A μs
    (Gatys et al. 2016 §2.2). Float32 RGB, clipped to 0-255."""
    style = style_rgb.reshape(-1, 3).astype(np.float64)
    reference = reference_rgb.reshape(-1, 3).astype(np.float64)
    mean_style, mean_reference = style.mean(axis=0), reference.mean(axis=0)
    transform = _sqrtm(_covariance(reference)) @ np.linalg.inv(_sqrtm(_covariance(style)))
    matched = (style - mean_style) @ transform.T + mean_reference
    return np.clip(matched, 0, 255).reshape(style_rgb.shape).astype(np.float32)


def _covariance(pixels: np.ndarray) -> np.ndarray:
    """RGB covariance, kept invertible for flat or grey images (a tiny ridge of 1e-3 levels²)."""
    return np.cov(pixels, rowvar=False) + 1e-3 * np.eye(3)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.maximum(values, 0))) @ vectors.T


def keep_source_chroma(stylized_rgb: np.ndarray, source_rgb: np.ndarray) -> np.ndarray:
    """The stylized frame's luminance (Y of YCrCb, BT.601) with the source frame's chroma (Cr, Cb),
    RGB float32 levels, unrounded. Where that colour lies outside RGB it is clipped, so chroma
    there moves a little."""
    stylized = cv2.cvtColor(stylized_rgb.astype(np.float32) / 255, cv2.COLOR_RGB2YCrCb)
    source = cv2.cvtColor(source_rgb.astype(np.float32) / 255, cv2.COLOR_RGB2YCrCb)
    combined = np.concatenate([stylized[..., :1], source[..., 1:]], axis=-1)
    rgb = cv2.cvtColor(combined, cv2.COLOR_YCrCb2RGB)
    return np.clip(rgb * 255, 0, 255)


def style_image_size(style_shape: tuple[int, int], frame_shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) of the style image: its long side is `scale` × the frame's long side,
    its aspect ratio kept (stretching it to the frame imprints the painting's layout), each side
    at least VGG_MIN_SIDE, and no more than style_pixel_cap pixels."""
    return _within_cap(_requested_style_size(style_shape, frame_shape, scale), style_pixel_cap(frame_shape, scale))


def _requested_style_size(style_shape: tuple[int, int], frame_shape: tuple[int, int], scale: float) -> tuple[int, int]:
    factor = scale * max(frame_shape) / max(style_shape)
    factor = max(factor, VGG_MIN_SIDE / min(style_shape))
    return round(style_shape[0] * factor), round(style_shape[1] * factor)


def style_pixel_cap(frame_shape: tuple[int, int], scale: float) -> int:
    """Most pixels the scaled style image may have.

    Keeping its aspect ratio, a style image has at most (scale × frame long side)² pixels, so that
    bound never cuts an ordinary painting; only VGG16's minimum short side pushes a long, thin one
    past it (16x16000 becomes 32x32000: 2 GB of activations next to a 64x48 frame). 4× the frame's
    pixels still leaves such strips room and stays cheap: the style goes through VGG16 once, forward
    only, while every frame evaluation runs forward and backward over the frame.
    """
    height, width = frame_shape
    return max(4 * height * width, round(scale * max(frame_shape)) ** 2)


def _within_cap(size: tuple[int, int], cap: int) -> tuple[int, int]:
    """`size` shrunk to at most `cap` pixels, aspect kept while the short side can stay at or above
    VGG_MIN_SIDE. Past that the short side stays at the minimum and the long side alone shrinks:
    the image is squeezed along its length rather than padded, so every colour and stroke of it
    stays in view, with no mirrored seams or flat borders entering its statistics."""
    if size[0] * size[1] <= cap:
        return size
    shrink = math.sqrt(cap / (size[0] * size[1]))
    short = max(VGG_MIN_SIDE, math.floor(min(size) * shrink))
    long = max(short, min(math.floor(max(size) * shrink), cap // short))
    return (short, long) if size[0] <= size[1] else (long, short)


class Stylizer:
    """`style` is one RGB image or a blend of `StyleImage`s (weights summing to 1). With
    keep_colors "histogram", `colour_reference` is the frame whose colours the style images take:
    a render passes its first frame, so every frame and every farm chunk has the same targets."""

    def __init__(self, settings: Settings, weights: VGGWeights, style: np.ndarray | Sequence[StyleImage],
                 frame_shape: tuple[int, int], style_name: str | os.PathLike = "style",
                 colour_reference: np.ndarray | None = None):
        self.settings = settings = dataclasses.replace(settings, optimizer=chosen_optimizer(settings.optimizer))
        self.shape = (1, *frame_shape, 3)
        self._made_from = (weights, style, style_name, colour_reference)
        self._at_size: dict[tuple[int, int], Stylizer] = {}
        layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        self.extractor = feature_extractor(weights, layers, vgg_policy(settings.precision))
        blend = [StyleImage(style, 1.0, str(style_name))] if isinstance(style, np.ndarray) else list(style)
        if settings.keep_colors == "histogram":
            if colour_reference is None:
                raise ValueError("keep_colors 'histogram' needs a colour_reference frame")
            blend = [StyleImage(match_colour_statistics(s.rgb, colour_reference), s.weight, s.name) for s in blend]
        self.style_grams = self._blended_grams(blend, frame_shape)
        probe = self.extractor(tf.zeros(self.shape))
        self.content_targets = {n: tf.Variable(tf.zeros_like(probe[n]), trainable=False) for n in settings.content_layers}
        self.warped = tf.Variable(tf.zeros(self.shape), trainable=False)
        self.reliability = tf.Variable(tf.zeros(self.shape[:3] + (1,)), trainable=False)
        # XLA (settings.xla) compiles the loss and its gradient; on a 2-core CPU an evaluation took
        # 27 % (128 px) and 8 % (256 px) longer than with TensorFlow's own kernels
        # (benchmarks/optimizers.py), so it is off by default; on a GPU it is unmeasured.
        self._compiled_loss = tf.function(self._loss_and_gradient, jit_compile=settings.xla == "on",
                                          input_signature=[tf.TensorSpec(self.shape, tf.float32)])
        self._device_optimizer: Row | None = None
        # Every frame's content targets: compiled, and pruned to the layers they need, this
        # forward pass took ~40 % less time than an eager Keras call (128 px, on a CPU).
        self._content_features = tf.function(lambda image: {n: self.extractor(image)[n] for n in settings.content_layers},
                                             input_signature=[tf.TensorSpec(self.shape, tf.float32)])

    def _blended_grams(self, blend: Sequence[StyleImage], frame_shape: tuple[int, int]) -> dict[str, tf.Tensor]:
        """Σ wᵢ Gᵢ per layer: each painting at its own scale, its Gram matrices weighted by its share."""
        grams = [(s.weight, self._style_grams(s.rgb, frame_shape, s.name)) for s in blend if s.weight > 0]
        return {name: tf.add_n([weight * g[name] for weight, g in grams]) for name in self.settings.style_layers}

    def _style_grams(self, style_rgb: np.ndarray, frame_shape: tuple[int, int], style_name: str) -> dict[str, tf.Tensor]:
        height, width = style_image_size(style_rgb.shape[:2], frame_shape, self.settings.style_scale)
        requested = _requested_style_size(style_rgb.shape[:2], frame_shape, self.settings.style_scale)
        if (height, width) != requested:
            _warn_cut_down(style_name, style_rgb.shape[:2], requested, (height, width), frame_shape)
        features = self.extractor(to_caffe(images.resized(style_rgb, (width, height)))[None])
        return {name: losses.gram(features[name]) for name in self.settings.style_layers}

    def _loss_and_gradient(self, image: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = self.terms(self.extractor(image), image, self.content_targets, self.warped, self.reliability)
            total = self.total(terms)
        return total, terms, tape.gradient(total, image)

    def terms(self, features: dict[str, tf.Tensor], image: tf.Tensor, content_targets: dict[str, tf.Tensor],
              warped: tf.Tensor, reliability: tf.Tensor) -> dict[str, tf.Tensor]:
        """The loss terms of one image (1, H, W, 3) and its VGG features, unweighted."""
        return {
            "content": _mean([losses.content_loss(features[n], t) for n, t in content_targets.items()]),
            "style": _mean([losses.style_loss(features[n], g) for n, g in self.style_grams.items()]),
            "tv": losses.total_variation(image),
            "temporal": losses.temporal_loss(image, warped, reliability),
        }

    def total(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        s = self.settings
        return (s.content_weight * terms["content"] + s.style_weight * terms["style"] + s.tv_weight * terms["tv"]
                + s.temporal_weight * terms["temporal"])

    def stylize(
        self,
        content_rgb: np.ndarray,
        start_rgb: np.ndarray,
        budget: int,
        guide: TemporalGuide | None = None,
        on_iterate: Callable[[Iterate], None] | None = None,
    ) -> FrameResult:
        """Optimize the frame from `start_rgb` for at most `budget` loss evaluations. With keep_colors
        "luminance" the image returned, and so stored, encoded and warped into the next frame's
        start and temporal target, has the chroma of `content_rgb`; its losses are the optimized
        image's, before the chroma was replaced."""
        began = time.perf_counter()
        self._set_targets(content_rgb, guide)
        optimize = _on_device if self.optimizes_on_device else _scipy_lbfgs
        tracker = _Tracker(self, on_iterate or ignore)
        reason = optimize(tracker, to_caffe(start_rgb)[None], budget)
        levels = from_caffe(tracker.best_image[0])
        if self.settings.keep_colors == "luminance":
            # The chain continues from this colour-kept frame, not the full-colour optimum: a work
            # directory keeps one image per frame, and a resumed chain, a farm chunk or a stitch must
            # start from exactly what an uninterrupted chain did, which is what is encoded. It is not
            # the steadier chain: each frame then starts in the source's colours and its optimization
            # pulls them back toward the painting's, moving luminance with them. On a small test a
            # chain from the full-colour optimum flickered less (benchmarks/keep_colors_chain.py,
            # RESULTS.md: E_warp 0.59x against 0.75x the flow floor); getting that needs the work
            # directory to keep the full-colour frame and apply the chroma when frames are read out.
            levels = keep_source_chroma(levels, content_rgb)
        return FrameResult(levels, tracker.best_terms, tracker.evaluations, reason,
                           time.perf_counter() - began, tuple(tracker.trace))

    def stylize_cold(self, content_rgb: np.ndarray, on_iterate: Callable[[Iterate], None] | None = None) -> FrameResult:
        """A frame with nothing before it: from the content, first at `coarse_levels` coarser sizes
        (coarse-to-fine, as in Gatys et al. 2017 and crowsonkb/style-transfer-pytorch), each result
        upsampled to start the next, then `first_frame_iterations` evaluations at full size.

        Why: a warm-started chain keeps optimizing one image, frame after frame, so it ends where the
        loss's optimum is; a cold frame stopped early is still close to the photograph it started
        from, and the chain then drifts away from that look (measured: benchmarks/RESULTS.md,
        "drift"). At half size an evaluation costs about a quarter, so the coarse levels bring the
        cold frame near the optimum for little, and the chain has nowhere left to drift to."""
        start, coarse_evaluations = content_rgb, 0
        for shape in coarse_shapes(self.shape[1:3], self.settings.coarse_levels):
            small = images.resized(content_rgb, shape[::-1])
            result = self.at_size(shape).stylize(small, images.resized(start.astype(np.float32), shape[::-1]),
                                                 self.settings.coarse_iterations, on_iterate=on_iterate)
            start, coarse_evaluations = result.image, coarse_evaluations + result.evaluations
        final = self.stylize(content_rgb, images.resized(start.astype(np.float32), self.shape[2:0:-1]),
                             self.settings.first_frame_iterations, on_iterate=on_iterate)
        return dataclasses.replace(final, coarse_evaluations=coarse_evaluations)

    def at_size(self, frame_shape: tuple[int, int]) -> "Stylizer":
        """The same look (settings, weights, style) for frames of another size, made once."""
        if frame_shape not in self._at_size:
            weights, style, style_name, colour_reference = self._made_from
            self._at_size[frame_shape] = Stylizer(self.settings, weights, style, frame_shape, style_name,
                                                  colour_reference)
        return self._at_size[frame_shape]

    def _set_targets(self, content_rgb: np.ndarray, guide: TemporalGuide | None) -> None:
        targets = self.targets(content_rgb, guide)
        for name, target in self.content_targets.items():
            target.assign(targets[name])
        self.warped.assign(targets["warped"])
        self.reliability.assign(targets["reliability"])

    def targets(self, content_rgb: np.ndarray, guide: TemporalGuide | None) -> dict[str, tf.Tensor]:
        """A frame's content features (by layer name), and its temporal guide's "warped" image and
        "reliability" (zero where there is no guide), shaped as the loss graph takes them."""
        features = self._content_features(tf.constant(to_caffe(content_rgb)[None]))
        if guide is None or self.settings.temporal_weight == 0:
            return {**features, "warped": tf.zeros(self.shape), "reliability": tf.zeros(self.reliability.shape)}
        return {**features, "warped": tf.constant(to_caffe(guide.warped)[None], tf.float32),
                "reliability": tf.constant(guide.weight * guide.reliability[None, :, :, None].astype(np.float32))}

    def evaluate(self, image: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
        """Total loss, its terms and gradient at a Caffe-space image (1, H, W, 3)."""
        total, terms, gradient = self._compiled_loss(tf.constant(image, tf.float32))
        return float(total), {k: float(v) for k, v in terms.items()}, gradient.numpy()

    @property
    def optimizes_on_device(self) -> bool:
        """True for the TensorFlow optimizers ("lbfgs", "adam"), which keep their state in device buffers."""
        return self.settings.optimizer != "scipy-lbfgs"

    @property
    def device_optimizer(self) -> Row:
        """The in-TensorFlow optimizer of settings.optimizer ("lbfgs", "adam"), made on first use:
        its loop traces the loss once more, which SciPy's optimizer never needs."""
        if self._device_optimizer is None:
            loss = self._compiled_loss if self.settings.xla == "on" else self._loss_and_gradient
            self._device_optimizer = DeviceOptimizer(one_row(loss), self.shape, self.settings).row()
        return self._device_optimizer


def coarse_shapes(frame_shape: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """(height, width) of the coarser sizes, coarsest first: 1/2, 1/4, … of `frame_shape`, up to
    `levels` of them, none with a side under VGG_MIN_SIDE."""
    height, width = frame_shape
    shapes = [(round(height / 2 ** k), round(width / 2 ** k)) for k in range(levels, 0, -1)]
    return [shape for shape in shapes if min(shape) >= VGG_MIN_SIDE]


def _warn_cut_down(style_name: str, shape: tuple[int, int], requested: tuple[int, int], size: tuple[int, int],
                   frame_shape: tuple[int, int]) -> None:
    print(f"warning: {style_name}: {_wxh(shape)} style image would scale to {_wxh(requested)} "
          f"({requested[0] * requested[1] / 1e6:.1f} megapixels) for {_wxh(frame_shape)} frames; "
          f"cut down to {_wxh(size)} to bound memory", file=sys.stderr)


def _wxh(shape: tuple[int, int]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _mean(terms: list[tf.Tensor]) -> tf.Tensor:
    """Mean over layers, so adding a layer does not change what a weight means; 0 for none."""
    return tf.add_n(terms) / len(terms) if terms else tf.constant(0.0)


class _Tracker:
    """Counts evaluations, keeps the best image seen and decides when the loss has settled."""

    def __init__(self, stylizer: Stylizer, on_iterate: Callable[[Iterate], None]):
        self.stylizer, self.on_iterate = stylizer, on_iterate
        self.settings = stylizer.settings
        self.evaluations, self.trace, self.last_terms = 0, [], {}
        self.best_loss, self.best_image, self.best_terms = np.inf, None, {}

    def evaluate(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        total, terms, gradient = self.stylizer.evaluate(image)
        self.last_terms = terms
        if total < self.best_loss:
            self.best_loss, self.best_image, self.best_terms = total, image.copy(), {**terms, "total": total}
        return total, gradient

    def settled(self, loss: float) -> bool:
        """Record one iteration; True once the loss fell by less than stop_tolerance (or rose) over
        stop_window iterations."""
        return self.iterated(self.evaluations, loss, self.last_terms.get("temporal", 0.0))

    def iterated(self, evaluations: int, loss: float, temporal: float) -> bool:
        """`settled` for an iteration made elsewhere (on the device), `evaluations` in by its end."""
        without_temporal = loss - self.settings.temporal_weight * temporal
        self.trace.append((evaluations, loss, without_temporal))
        self.on_iterate(Iterate(evaluations, loss))
        window, tolerance = self.settings.stop_window, self.settings.stop_tolerance
        if window == 0 or len(self.trace) <= window:
            return False
        return bool(loss_settled(self.trace[-window - 1][1], loss, tolerance))

    def recent_losses(self) -> list[float]:
        return [loss for _, loss, _ in self.trace[-self.settings.stop_window:]] if self.settings.stop_window else []


def _bounds(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.broadcast_to(PIXEL_MIN, shape), np.broadcast_to(PIXEL_MAX, shape)


def _on_device(tracker: _Tracker, start: np.ndarray, budget: int) -> str:
    """L-BFGS or Adam in TensorFlow (device_optimizer.py): chunks of iterations on the device;
    the host replays each chunk's iterations into the trace and the progress callback."""
    optimizer = tracker.stylizer.device_optimizer
    optimizer.reset(start)
    reason = "running"
    while reason == "running":
        chunk = optimizer.run(budget, tracker.recent_losses())
        settled = [tracker.iterated(*iteration) for iteration in chunk.iterations()]
        # The chunk ran the same early-stop rule, so it ended at the first settled iteration.
        reason = "converged" if any(settled) else chunk.status
    tracker.evaluations = int(optimizer.evaluations)
    tracker.best_image, tracker.best_terms = optimizer.best_image(), optimizer.best_terms_and_total()
    return reason


def _scipy_lbfgs(tracker: _Tracker, start: np.ndarray, budget: int) -> str:
    """SciPy's L-BFGS-B inside the pixel bounds; its own stopping tests are off (they end
    O(1) losses after a few dozen evaluations), ours decide."""
    shape = start.shape
    low, high = _bounds(shape)
    # A mean over 10^5 values has per-pixel gradients near 1e-7, which L-BFGS-B's bounded
    # line search mistakes for zero (it stalls at once); summing instead of averaging does not.
    scale = float(start.size)

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        total, gradient = tracker.evaluate(flat.reshape(shape).astype(np.float32))
        return total * scale, gradient.ravel().astype(np.float64) * scale

    settled = False

    def after_iteration(intermediate_result) -> None:
        nonlocal settled
        settled = tracker.settled(float(intermediate_result.fun) / scale)
        if settled:
            raise StopIteration  # SciPy's documented way for a callback to end the minimization

    result = scipy.optimize.minimize(
        loss_and_gradient,
        start.ravel().astype(np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(low.ravel(), high.ravel()),
        callback=after_iteration,
        options={"maxfun": budget, "maxiter": budget, "gtol": 0.0, "ftol": 0.0, "maxcor": 20},
    )
    if settled:
        return "converged"
    return "budget" if result.status == 1 else str(result.message)
