"""L-BFGS and Adam on the device: many iterations inside one compiled function.

SciPy's L-BFGS-B (stylize._scipy_lbfgs) copies the image and its gradient to the host in float64
at every loss evaluation and runs its line search there. Here the image, the gradient, the
L-BFGS history and Adam's moments stay in TensorFlow variables; one call of `run` makes up to a
chunk of iterations inside one tf.function (a tf.while_loop), and the host sees only a few
scalars per iteration (loss, temporal term, evaluations so far) to show progress and keep the
trace. The early stop (stop_tolerance over stop_window iterations, stylize._Tracker.settled) is
decided inside the loop by the same rule in the same float64 arithmetic, fed the host's last
losses, so a chunk ends exactly where the host's rule would have ended the frame.

L-BFGS: the two-loop recursion over the last HISTORY (s, y) pairs in fixed-shape ring buffers;
the pixel bounds by projection (pixels held at a bound by their gradient are left out of the
direction, and every trial point is clipped into the box); a line search that backtracks by
quadratic interpolation until the Armijo condition holds and extrapolates while the slope is
still steep (weak Wolfe), so the first step of a frame finds its scale. Pairs without positive
curvature are skipped; a line search that finds no decrease forgets the history and retries
along the gradient, and fails the frame only if that fails too. Every evaluation counts against
the budget, line-search ones included, and the budget is never exceeded.

Measured against SciPy's L-BFGS-B (benchmarks/optimizers.py, 128x96, 2-core CPU): the same
losses at equal evaluations within 0.03 % over a 100-evaluation cold frame and 20-evaluation
warm frames, with 2.7 % of the optimizer's time outside the loss (SciPy 40 %); a whole render
was 8 % faster end to end (benchmarks/RESULTS.md, "Optimizers"). Early in a
cold frame whose source has many clipped pixels (~11 % at 0 or 255) it trails: 1.5 % higher
after 20 evaluations at 128 px, 9 % after 10 at 256 px. L-BFGS-B's Cauchy point and subspace
minimization treat pixels at a bound better than projection with a masked two-loop does; on
the same frame with no clipped pixels this one was ahead. Masking the pairs to free pixels, or
not masking the direction, did not close the gap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from .config import Settings
from .vgg import PIXEL_MAX, PIXEL_MIN

TERMS = ("content", "style", "tv", "temporal")
HISTORY = 20  # (s, y) pairs, as stylize._scipy_lbfgs asks of SciPy (maxcor); 10 ended ~0.4 % higher on a test frame
MAX_LINE_SEARCH = 20  # evaluations one line search may spend (SciPy's limit too)
ARMIJO, WOLFE = 1e-4, 0.9  # sufficient decrease; slope reduction (SciPy's ftol and gtol)
EXTRAPOLATE = 4.0  # step growth while the slope is still steep (Moré-Thuente allows up to 5x)
# Curvature s·y must exceed this share of y·y for a pair to be kept (float32's epsilon).
CURVATURE_EPSILON = float(np.finfo(np.float32).eps)
CHUNK_ITERATIONS = 10  # iterations per call when stop_window does not set it

RUNNING, CONVERGED, BUDGET, FAILED = 0, 1, 2, 3
STATUS = {CONVERGED: "converged", BUDGET: "budget", FAILED: "line search found no decrease"}

LossAndGradient = Callable[[tf.Tensor], tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]]


@dataclass(frozen=True)
class RunResult:
    """What one `run` tells the host: per iteration, evaluations so far, the loss of the image it
    reached and that image's temporal term; and why it ended ("running": more to do)."""

    evaluations: np.ndarray
    losses: np.ndarray
    temporal: np.ndarray
    status: str

    def iterations(self) -> list[tuple[int, float, float]]:
        return [(int(e), float(loss), float(t)) for e, loss, t in zip(self.evaluations, self.losses, self.temporal)]


def loss_settled(before, loss, tolerance: float):
    """The early stop's rule, for Python floats on the host and float64 tensors on the device: over
    the window the loss fell by less than `tolerance` of the loss `before` it, or rose. A rise
    counts: Adam's warm frames rise at once and, over 20 evaluations, never came back below their
    start (benchmarks/RESULTS.md, "Adam's early stop"), so running on gains nothing."""
    return (before - loss) < tolerance * abs(before)


def _dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(a * b)


class DeviceOptimizer:
    """One image shape and one loss; `reset(start)` for each frame, then `run` until its chunk's
    status is not "running". `settings.optimizer` chooses "lbfgs" or "adam"."""

    def __init__(self, loss_and_gradient: LossAndGradient, shape: tuple[int, ...], settings: Settings):
        self.settings = settings
        self._loss_and_gradient = loss_and_gradient
        self._low, self._high = tf.constant(PIXEL_MIN), tf.constant(PIXEL_MAX)
        self._step = _Lbfgs(self, shape) if settings.optimizer == "lbfgs" else _Adam(self, shape)
        self.image = tf.Variable(tf.zeros(shape), trainable=False)
        self.best = tf.Variable(tf.zeros(shape), trainable=False)
        self.best_loss = tf.Variable(math.inf, trainable=False)
        self.best_terms = tf.Variable(tf.zeros(len(TERMS)), trainable=False)
        self.evaluations = tf.Variable(0, trainable=False)
        self.evaluation_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.window = settings.stop_window
        self.chunk_iterations = settings.stop_window or CHUNK_ITERATIONS
        self._run = tf.function(self._chunk, input_signature=[
            tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32), tf.TensorSpec((self.window,), tf.float64)])

    def reset(self, start: np.ndarray) -> None:
        """A new frame from `start` (Caffe space, (1, H, W, 3)): nothing evaluated, no history."""
        self.image.assign(start)
        self.best.assign(start)
        self.best_loss.assign(math.inf)
        self.best_terms.assign(tf.zeros(len(TERMS)))
        self.evaluations.assign(0)
        self.evaluation_seconds.assign(0.0)
        self._step.reset()

    def run(self, budget: int, recent_losses: list[float]) -> RunResult:
        """Up to a chunk of iterations, within `budget` evaluations for the frame in all.
        `recent_losses`: the frame's losses so far, for the early stop (only the last window count)."""
        recent = [math.nan] * self.window + list(recent_losses)
        evaluations, losses, temporal, status = self._run(
            tf.constant(budget, tf.int32), tf.constant(self.chunk_iterations, tf.int32),
            tf.constant(recent[len(recent) - self.window:], tf.float64))
        return RunResult(evaluations.numpy(), losses.numpy(), temporal.numpy(), STATUS.get(int(status), "running"))

    def best_image(self) -> np.ndarray:
        return self.best.numpy()

    def best_terms_and_total(self) -> dict[str, float]:
        if not math.isfinite(float(self.best_loss)):
            return {}
        return {**dict(zip(TERMS, self.best_terms.numpy().tolist())), "total": float(self.best_loss)}

    def _chunk(self, budget: tf.Tensor, iterations: tf.Tensor, recent: tf.Tensor):
        evaluations = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=())
        losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        temporal = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        done, status = tf.constant(0), tf.constant(RUNNING)
        while done < iterations and status == RUNNING:
            moved, failed, loss, terms = self._step.iterate(budget)
            if moved:
                evaluations = evaluations.write(done, self.evaluations.read_value())
                losses = losses.write(done, loss)
                temporal = temporal.write(done, terms[TERMS.index("temporal")])
                done += 1
                settled, recent = self._settled(recent, loss)
                if settled:
                    status = tf.constant(CONVERGED)
            if failed:
                status = tf.constant(FAILED)
            elif status == RUNNING and self.evaluations >= budget:
                status = tf.constant(BUDGET)
        return evaluations.stack(), losses.stack(), temporal.stack(), status

    def _settled(self, recent: tf.Tensor, loss: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """_Tracker.settled's rule (loss_settled), in float64 as on the host; NaN where the frame
        has no loss that far back, which never settles."""
        if self.window == 0:
            return tf.constant(False), recent
        loss = tf.cast(loss, tf.float64)
        before = recent[0]
        settled = loss_settled(before, loss, self.settings.stop_tolerance)
        return settled, tf.concat([recent[1:], loss[None]], axis=0)

    def evaluate(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Loss, terms (in TERMS order) and gradient at `image`; counted, timed, and kept if best."""
        began = tf.timestamp()
        with tf.control_dependencies([began]):
            image = tf.identity(image)
        total, terms, gradient = self._loss_and_gradient(image)
        terms = tf.stack([terms[name] for name in TERMS])
        with tf.control_dependencies([total, gradient]):
            self.evaluation_seconds.assign_add(tf.timestamp() - began)
        self.evaluations.assign_add(1)
        if total < self.best_loss:
            self.best.assign(image)
            self.best_loss.assign(total)
            self.best_terms.assign(terms)
        return total, terms, gradient

    def project(self, image: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(image, self._low, self._high)


class _Adam:
    """Adam in pixel units (learning_rate levels per step at most, about), clipped to the box."""

    BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8

    def __init__(self, optimizer: DeviceOptimizer, shape: tuple[int, ...]):
        self.optimizer = optimizer
        self.moment = tf.Variable(tf.zeros(shape), trainable=False)
        self.velocity = tf.Variable(tf.zeros(shape), trainable=False)
        self.steps = tf.Variable(0.0, trainable=False)

    def reset(self) -> None:
        self.moment.assign(tf.zeros_like(self.moment))
        self.velocity.assign(tf.zeros_like(self.velocity))
        self.steps.assign(0.0)

    def iterate(self, budget: tf.Tensor):
        """One evaluation and one step; the loss reported is the evaluated image's, before the step."""
        optimizer = self.optimizer
        if optimizer.evaluations >= budget:
            return tf.constant(False), tf.constant(False), tf.constant(0.0), tf.zeros(len(TERMS))
        loss, terms, gradient = optimizer.evaluate(optimizer.image)
        self.steps.assign_add(1.0)
        self.moment.assign(self.BETA1 * self.moment + (1 - self.BETA1) * gradient)
        self.velocity.assign(self.BETA2 * self.velocity + (1 - self.BETA2) * tf.square(gradient))
        moment = self.moment / (1 - self.BETA1 ** self.steps)
        velocity = self.velocity / (1 - self.BETA2 ** self.steps)
        rate = optimizer.settings.learning_rate
        optimizer.image.assign(optimizer.project(optimizer.image - rate * moment / (tf.sqrt(velocity) + self.EPSILON)))
        return tf.constant(True), tf.constant(False), loss, terms


class _History:
    """The last `size` (s, y) pairs of L-BFGS in ring buffers, and the two-loop recursion."""

    def __init__(self, shape: tuple[int, ...], size: int):
        self.size = size
        self.s = tf.Variable(tf.zeros((size, *shape)), trainable=False)
        self.y = tf.Variable(tf.zeros((size, *shape)), trainable=False)
        self.rho = tf.Variable(tf.zeros(size), trainable=False)
        self.count = tf.Variable(0, trainable=False)
        self.next = tf.Variable(0, trainable=False)

    def clear(self) -> None:
        self.count.assign(0)
        self.next.assign(0)

    def add(self, s: tf.Tensor, y: tf.Tensor) -> None:
        """Keep the pair only with positive curvature, so the inverse Hessian estimate stays positive definite."""
        curvature = _dot(s, y)
        if curvature > CURVATURE_EPSILON * _dot(y, y):
            slot = self.next
            # A scatter writes the one slot in place; a sliced assign (self.s[slot].assign) took
            # ~2 ms per buffer at 128 px on a CPU, 20x longer, as if it copied the whole buffer.
            self.s.scatter_update(tf.IndexedSlices(s[None], slot[None]))
            self.y.scatter_update(tf.IndexedSlices(y[None], slot[None]))
            self.rho[slot].assign(1.0 / curvature)
            self.next.assign((slot + 1) % self.size)
            self.count.assign(tf.minimum(self.count + 1, self.size))

    def times_inverse_hessian(self, gradient: tf.Tensor) -> tf.Tensor:
        """H·g by the two-loop recursion over the stored pairs, newest first, H₀ = (s·y / y·y)·I
        from the newest pair (I with none). Loops rather than unrolled: a 20-slot unrolled
        recursion made the L-BFGS graph take seconds longer to trace."""
        # Pairs are gathered one slot at a time (sparse_read), never by a read of the whole buffer:
        # after a scatter, TensorFlow copies a variable on every whole read. (Reading slices of
        # the variable, 40 reads a step, had also made every evaluation ~20 % slower.)
        rho = self.rho.read_value()
        newest = (self.next - 1) % self.size
        q, alphas = gradient, tf.TensorArray(tf.float32, size=self.size)
        for j in tf.range(self.count):
            slot = (newest - j) % self.size
            alpha = rho[slot] * _dot(self.s.sparse_read(slot), q)
            q = q - alpha * self.y.sparse_read(slot)
            alphas = alphas.write(j, alpha)
        scale = 1.0
        if self.count > 0:
            newest_y = self.y.sparse_read(newest)
            scale = 1.0 / (rho[newest] * _dot(newest_y, newest_y))
        r = scale * q
        for j in tf.range(self.count - 1, -1, -1):
            slot = (newest - j) % self.size
            beta = rho[slot] * _dot(self.y.sparse_read(slot), r)
            r = r + (alphas.read(j) - beta) * self.s.sparse_read(slot)
        return r


class _Lbfgs:
    """Projected L-BFGS with a safeguarded line search (see the module's docstring)."""

    def __init__(self, optimizer: DeviceOptimizer, shape: tuple[int, ...]):
        self.optimizer = optimizer
        self.history = _History(shape, HISTORY)
        self.loss = tf.Variable(0.0, trainable=False)
        self.terms = tf.Variable(tf.zeros(len(TERMS)), trainable=False)
        self.gradient = tf.Variable(tf.zeros(shape), trainable=False)
        self.has_point = tf.Variable(False, trainable=False)
        # The best point the current line search accepted, not yet taken.
        self.trial = tf.Variable(tf.zeros(shape), trainable=False)
        self.trial_gradient = tf.Variable(tf.zeros(shape), trainable=False)
        self.trial_loss = tf.Variable(0.0, trainable=False)
        self.trial_terms = tf.Variable(tf.zeros(len(TERMS)), trainable=False)

    def reset(self) -> None:
        self.history.clear()
        # No point yet: a zero gradient gives a zero direction, and against an infinite loss the
        # line search accepts its first trial, the start itself. So the start is evaluated at the
        # line search's one call of the loss, and the loss graph is traced once, not twice.
        self.has_point.assign(False)
        self.loss.assign(math.inf)
        self.gradient.assign(tf.zeros_like(self.gradient))

    def iterate(self, budget: tf.Tensor):
        """One line search along the L-BFGS direction; `moved` when it took a step, `failed` when
        even the gradient direction gave no decrease."""
        optimizer = self.optimizer
        had_point = self.has_point.read_value()
        direction, fresh = self._direction()
        found = self._line_search(direction, fresh, budget)
        failed = tf.constant(False)
        if found:
            self.history.add(self.trial - optimizer.image, self.trial_gradient - self.gradient)
            self._take(self.trial, self.trial_loss, self.trial_terms, self.trial_gradient)
            self.has_point.assign(True)
        elif optimizer.evaluations < budget:  # no decrease found: forget the curvature, retry along -g
            failed = fresh
            self.history.clear()
        return found & had_point, failed, self.loss.read_value(), self.terms.read_value()

    def _take(self, image, loss, terms, gradient) -> None:
        self.optimizer.image.assign(image)
        self.loss.assign(loss)
        self.terms.assign(terms)
        self.gradient.assign(gradient)

    def _direction(self) -> tuple[tf.Tensor, tf.Tensor]:
        """-H·g over the free pixels (those not held at a bound by their gradient); `fresh` when
        it is the plain gradient (no history, or the history gave no descent direction)."""
        image, gradient = self.optimizer.image, self.gradient
        held = ((image <= self.optimizer._low) & (gradient > 0)) | ((image >= self.optimizer._high) & (gradient < 0))
        free_gradient = tf.where(held, 0.0, gradient)
        direction = tf.where(held, 0.0, -self.history.times_inverse_hessian(free_gradient))
        fresh = (self.history.count == 0) | ~(_dot(gradient, direction) < 0)
        if fresh:
            self.history.clear()
        return tf.where(fresh, -free_gradient, direction), fresh

    def _line_search(self, direction: tf.Tensor, fresh: tf.Tensor, budget: tf.Tensor) -> tf.Tensor:
        """Backtrack until the Armijo condition holds, extrapolate while the slope stays steep;
        the accepted point is left in trial*. True when one was accepted."""
        optimizer = self.optimizer
        slope = _dot(self.gradient, direction)
        # Without curvature yet, step along the gradient of the loss summed over pixels, not averaged
        # (SciPy's first step on stylize's scaled loss): the loss is a mean, so this is O(1) levels
        # at any frame size; the search then grows or shrinks it.
        step = tf.where(fresh, tf.cast(tf.size(direction), tf.float32), 1.0)
        tries, found, overshot, done = tf.constant(0), tf.constant(False), tf.constant(False), tf.constant(False)
        while not done and tries < MAX_LINE_SEARCH and optimizer.evaluations < budget:
            point = optimizer.project(optimizer.image + step * direction)
            loss, terms, gradient = optimizer.evaluate(point)
            tries += 1
            predicted = _dot(self.gradient, point - optimizer.image)  # ≤ 0: the projected step's first-order change
            sufficient = tf.math.is_finite(loss) & (loss <= self.loss + ARMIJO * predicted)
            if sufficient and (not found or loss < self.trial_loss):
                self.trial.assign(point)
                self.trial_gradient.assign(gradient)
                self.trial_loss.assign(loss)
                self.trial_terms.assign(terms)
                found = tf.constant(True)
                still_steep = _dot(gradient, direction) < WOLFE * slope
                done = overshot or not still_steep
                step = step * EXTRAPOLATE
            else:
                overshot = tf.constant(True)
                done = found  # an extrapolation went too far: keep the point before it
                step = _backtracked(step, slope, self.loss, loss)
        return found


def _backtracked(step: tf.Tensor, slope: tf.Tensor, loss_at_zero: tf.Tensor, loss: tf.Tensor) -> tf.Tensor:
    """The minimum of the quadratic through φ(0), φ'(0) and φ(step), kept within [0.1, 0.5]·step."""
    curvature = loss - loss_at_zero - slope * step
    quadratic = -slope * step * step / (2.0 * tf.maximum(curvature, 1e-30))
    quadratic = tf.where(tf.math.is_finite(loss) & (curvature > 0), quadratic, 0.1 * step)
    return tf.clip_by_value(quadratic, 0.1 * step, 0.5 * step)
