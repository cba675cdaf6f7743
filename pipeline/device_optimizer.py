"""L-BFGS and Adam on the device: many iterations inside one compiled function, for one frame
or for a row of frames side by side (`chains`: each row its own frame and its own optimizer state,
one loss evaluation of all rows per step).

SciPy's L-BFGS-B (stylize._scipy_lbfgs) copies the image and its gradient to the host in float64
at every loss evaluation and runs its line search there. Here the image, the gradient, the
L-BFGS history and Adam's moments stay in TensorFlow variables; one call of `run` makes up to a
chunk of iterations inside one tf.function (a tf.while_loop), and the host sees only a few
scalars per row and iteration (loss, temporal term, evaluations so far) to show progress and keep the
trace. The early stop (stop_tolerance over stop_window iterations, stylize._Tracker.settled) is
decided inside the loop by the same rule in the same float64 arithmetic, fed the host's last
losses, so a chunk ends exactly where the host's rule would have ended the frame.

L-BFGS: H·g by the compact representation (Byrd, Nocedal and Schnabel 1994; the two-loop recursion's
result, in two matrix products over the pairs) from the last HISTORY (s, y) pairs in a fixed-shape
ring buffer; the pixel bounds by projection (pixels held at a bound by their gradient are left out
of the direction, and every trial point is clipped into the box); a line search that backtracks by
quadratic interpolation until the Armijo condition holds and extrapolates while the slope is still
steep (weak Wolfe), so the first step of a frame finds its scale. Pairs without positive curvature
are skipped; a line search that finds no decrease forgets the history and retries along the
gradient, and fails the frame only if that fails too. Every evaluation counts against the budget,
line-search ones included, and the budget is never exceeded.

Measured against SciPy's L-BFGS-B (benchmarks/optimizers.py, 128x96, 2-core CPU): the same losses at
equal evaluations within 0.03 % over a 100-evaluation cold frame and 20-evaluation warm frames; a
whole render was 8 % faster end to end (benchmarks/RESULTS.md, "Optimizers"). At 256 px on 24
frames, 2.7 % of the wall time is outside the loss and the content targets (SciPy 14 % on the
same machine; 3.3 % before the loop stopped copying images it only read), about 8 ms per 290 ms
evaluation: reading the pairs in two matrix products, three XLA passes and a few copies into
variables (RESULTS, "copies"). Early in a cold frame whose source has many clipped pixels (~11 %
at 0 or 255) it trails: 1.5 % higher after 20 evaluations at 128 px, 9 % after 10 at 256 px;
over 8 cold frames of two clips it ended 0.24 % above SciPy on average with SciPy's 20 pairs. On the same frame with no clipped pixels this one was ahead. Keeping 40 pairs
instead of SciPy's 20 brought 8 cold frames of two clips in two styles from 0.19 % to 0.06 % above
SciPy on average (0.9970-1.0040; lower on 7 of 8), while the share of a cold frame's time outside
VGG16 rose from 5.9 % to 9.0 % on this CPU with the two-loop recursion (4 % with the compact form);
warm frames never fill 20. The gap opens over evaluations 5-15 (up to 10 %), where both take the
unit step at every iteration, so the line search is not the cause: Moré and Thuente's (SciPy's) in
its place changed nothing. Masking the pairs to free pixels, not masking the direction, L-BFGS-B's
subspace step, and L-BFGS-B's Cauchy point with it (which matched SciPy's first iterations) did not
close the gap beyond the frame-to-frame spread; the last made frames 1.3-1.7x slower
(benchmarks/RESULTS.md, "Optimizers: cold frames"). By the end of a cold frame the gap is chance:
over 13 cold frames this one ended 0.07 % above SciPy on average, SciPy itself from a start moved
by a thousandth of a grey level 0.12 % (RESULTS, "Optimizers: SciPy against itself").
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from .config import Settings
from .vgg import PIXEL_MAX, PIXEL_MIN

TERMS = ("content", "style", "tv", "temporal")
# (s, y) pairs kept: twice SciPy's (stylize._scipy_lbfgs's maxcor), which cold frames use (0.13 % lower
# losses over 8, lower on 7; benchmarks/RESULTS.md); 100 did no better, 10 ended ~0.4 % higher on one.
HISTORY = 40
MAX_LINE_SEARCH = 20  # evaluations one line search may spend (SciPy's limit too)
ARMIJO, WOLFE = 1e-4, 0.9  # sufficient decrease; slope reduction (SciPy's ftol and gtol)
EXTRAPOLATE = 4.0  # step growth while the slope is still steep (Moré-Thuente allows up to 5x)
# Curvature s·y must exceed this share of y·y for a pair to be kept (float32's epsilon).
CURVATURE_EPSILON = float(np.finfo(np.float32).eps)
CHUNK_ITERATIONS = 10  # iterations per call at most, when stop_window does not set it
# A call's length, about: a stop (Ctrl-C, a farm's SIGTERM) waits for the call in flight, and the
# progress bar moves once per call. On a CPU at 320x240 ten iterations took 4 s, at 1080p minutes.
CALL_SECONDS = 1.0

IDLE, RUNNING, CONVERGED, BUDGET, FAILED = -1, 0, 1, 2, 3  # IDLE: a row not asked to run
STATUS = {CONVERGED: "converged", BUDGET: "budget", FAILED: "line search found no decrease"}

# Images (rows, H, W, 3) -> each row's total (rows,), terms by name (rows,) and gradient (rows, H, W, 3).
BatchLoss = Callable[[tf.Tensor], tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]]


@dataclass(frozen=True)
class RunResult:
    """What one `run` tells the host about one row: per iteration, evaluations so far, the loss
    of the image it reached and that image's temporal term; and why it ended ("running": more to do)."""

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


def one_row(loss_and_gradient: Callable) -> BatchLoss:
    """A loss of one image (scalar total and terms) as a BatchLoss of one row."""
    def rows(images: tf.Tensor):
        total, terms, gradient = loss_and_gradient(images)
        return total[None], {name: term[None] for name, term in terms.items()}, gradient
    return rows


def _dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Row by row: (rows, ...) · (rows, ...) -> (rows,)."""
    return tf.reduce_sum(a * b, axis=list(range(1, len(a.shape))))


def _per_pixel(values: tf.Tensor) -> tf.Tensor:
    """(rows,) -> (rows, 1, 1, 1), to scale or select whole images."""
    return values[:, None, None, None]


def _update_rows(variable: tf.Variable, rows: tf.Tensor, values: tf.Tensor) -> None:
    """variable[r] = values[r] for the rows r where `rows` holds, in place. A tf.where over whole
    images took ~0.6 ms at 256x192 on a CPU, 6x a copy."""
    picked = tf.where(rows)
    variable.scatter_nd_update(picked, _gather_rows(values, picked[:, 0]))


def _gather_rows(values: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """values[rows]; with one row, a slice of none or all of it, which makes no copy (a gather does)."""
    return values[:tf.shape(rows)[0]] if values.shape[0] == 1 else tf.gather(values, rows)


def _read(variable: tf.Variable) -> tf.Tensor:
    """The variable's value without a copy. A scatter leaves a variable in copy-on-read mode, where
    every read copies it (an image per read here); a later scatter copies it only if the value
    read is still in use then."""
    tf.raw_ops.DisableCopyOnRead(resource=variable.handle)
    return variable.read_value()


def _assign_row(variable: tf.Variable, row: int, value) -> None:
    """variable[row] = value, as a frame begins (on the host, outside the compiled loop)."""
    value = tf.reshape(tf.convert_to_tensor(value, variable.dtype), (1, *variable.shape[1:]))
    variable.assign(value if variable.shape[0] == 1 else tf.tensor_scatter_nd_update(variable, [[row]], value))


class DeviceOptimizer:
    """`rows` frames of one shape optimized side by side, one loss evaluation of all rows per step
    (`chains`, batch.py; a single frame is one row). `reset(row, start)` begins a row's frame;
    `run` makes up to a chunk of iterations for the rows asked, until their status is not
    "running". `settings.optimizer` chooses "lbfgs" or "adam"."""

    def __init__(self, loss_and_gradient: BatchLoss, shape: tuple[int, ...], settings: Settings, rows: int = 1):
        self.settings, self.rows = settings, rows
        shape = (rows, *shape[1:])
        self._loss_and_gradient = loss_and_gradient
        self._step = _Lbfgs(self, shape) if settings.optimizer == "lbfgs" else _Adam(self, shape)
        self.image = tf.Variable(tf.zeros(shape), trainable=False)
        self.best = tf.Variable(tf.zeros(shape), trainable=False)
        self.best_loss = tf.Variable(tf.fill([rows], math.inf), trainable=False)
        self.best_terms = tf.Variable(tf.zeros((rows, len(TERMS))), trainable=False)
        self.evaluations = tf.Variable(tf.zeros(rows, tf.int32), trainable=False)
        self.evaluation_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # all rows' evaluations
        self.window = settings.stop_window
        self.chunk_iterations = settings.stop_window or CHUNK_ITERATIONS
        self._seconds_per_iteration = math.inf  # of the last call; the first call makes one iteration
        self._run = tf.function(self._chunk, input_signature=[
            tf.TensorSpec((rows,), tf.bool), tf.TensorSpec((rows,), tf.int32), tf.TensorSpec((), tf.int32),
            tf.TensorSpec((rows, self.window), tf.float64)])

    def reset(self, row: int, start: np.ndarray) -> None:
        """Row `row` begins a new frame from `start` (Caffe space, (1, H, W, 3)): nothing evaluated, no history."""
        _assign_row(self.image, row, start)
        _assign_row(self.best, row, start)
        _assign_row(self.best_loss, row, math.inf)
        _assign_row(self.best_terms, row, tf.zeros(len(TERMS)))
        _assign_row(self.evaluations, row, 0)
        self._step.reset(row)

    def run(self, asked: dict[int, tuple[int, list[float]]]) -> dict[int, RunResult]:
        """Up to a chunk of iterations for each row in `asked`, each within its `budget` evaluations
        for its frame in all; its losses so far feed the early stop (only the last window count).
        The chunk ends when any row's frame ends, so its chain can go on to its next frame."""
        active, budgets = np.zeros(self.rows, bool), np.zeros(self.rows, np.int32)
        recent = np.full((self.rows, self.window), math.nan)
        for row, (budget, losses) in asked.items():
            active[row], budgets[row] = True, budget
            if self.window:
                last = [math.nan] * self.window + list(losses)
                recent[row] = last[len(last) - self.window:]
        began = time.perf_counter()
        moved, evaluations, losses, temporal, status = (value.numpy() for value in self._run(
            tf.constant(active), tf.constant(budgets), tf.constant(self._iterations_per_call(), tf.int32),
            tf.constant(recent, tf.float64)))
        if len(moved):
            self._seconds_per_iteration = (time.perf_counter() - began) / len(moved)
        return {row: RunResult(evaluations[moved[:, row], row], losses[moved[:, row], row],
                               temporal[moved[:, row], row], STATUS.get(int(status[row]), "running"))
                for row in asked}

    def _iterations_per_call(self) -> int:
        """As many as take about CALL_SECONDS at the last call's pace, 1 to chunk_iterations: the
        chunking changes nothing else, as every iteration's state stays in the variables."""
        return int(np.clip(CALL_SECONDS // self._seconds_per_iteration, 1, self.chunk_iterations))

    def row(self, row: int = 0) -> "Row":
        return Row(self, row)

    def _chunk(self, active: tf.Tensor, budget: tf.Tensor, iterations: tf.Tensor, recent: tf.Tensor):
        rows = (self.rows,)
        moved_at = tf.TensorArray(tf.bool, size=0, dynamic_size=True, element_shape=rows)
        evaluations = tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=rows)
        losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=rows)
        temporal = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=rows)
        status = tf.where(active, RUNNING, IDLE)
        done, steps = tf.zeros(rows, tf.int32), tf.constant(0)
        while (tf.reduce_any(status == RUNNING) & tf.reduce_all(~active | (status == RUNNING))
               & (tf.reduce_max(done) < iterations)):
            moved, failed, loss, terms = self._step.iterate(budget, status == RUNNING)
            moved_at = moved_at.write(steps, moved)
            evaluations = evaluations.write(steps, self.evaluations.read_value())
            losses = losses.write(steps, loss)
            temporal = temporal.write(steps, terms[:, TERMS.index("temporal")])
            steps += 1
            done += tf.cast(moved, tf.int32)
            settled, recent = self._settled(recent, loss, moved)
            status = tf.where(settled, CONVERGED, status)
            status = tf.where(failed, FAILED, status)
            status = tf.where((status == RUNNING) & (self.evaluations >= budget), BUDGET, status)
        return moved_at.stack(), evaluations.stack(), losses.stack(), temporal.stack(), status

    def _settled(self, recent: tf.Tensor, loss: tf.Tensor, moved: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """_Tracker.settled's rule (loss_settled) for the rows that moved, in float64 as on the host;
        NaN where a frame has no loss that far back, which never settles."""
        if self.window == 0:
            return tf.zeros_like(moved), recent
        loss = tf.cast(loss, tf.float64)
        settled = moved & loss_settled(recent[:, 0], loss, self.settings.stop_tolerance)
        shifted = tf.concat([recent[:, 1:], loss[:, None]], axis=1)
        return settled, tf.where(moved[:, None], shifted, recent)

    def evaluate(self, images: tf.Tensor, counted: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Each row's loss, terms (in TERMS order) and gradient at `images`, all rows in one batch;
        the rows in `counted` are counted, and their images kept where best (the others are idle)."""
        # The clock starts once the images exist: a timestamp with no inputs may run as early as
        # the loop lets it, even an iteration ahead, and the evaluations' time then overlapped.
        with tf.control_dependencies([images]):
            began = tf.timestamp()
        with tf.control_dependencies([began]):
            images = tf.identity(images)
        totals, terms, gradient = self._loss_and_gradient(images)
        terms = tf.stack([terms[name] for name in TERMS], axis=1)
        with tf.control_dependencies([totals, gradient]):
            self.evaluation_seconds.assign_add(tf.timestamp() - began)
        self.evaluations.assign_add(tf.cast(counted, tf.int32))
        better = counted & (totals < self.best_loss)
        _update_rows(self.best, better, images)
        self.best_loss.assign(tf.where(better, totals, self.best_loss))
        self.best_terms.assign(tf.where(better[:, None], terms, self.best_terms))
        return totals, terms, gradient


class Row:
    """One row of a DeviceOptimizer as one frame's optimization sees it (stylize._on_device)."""

    def __init__(self, optimizer: DeviceOptimizer, row: int):
        self.optimizer, self.index = optimizer, row
        self._seconds_before = 0.0

    def reset(self, start: np.ndarray) -> None:
        self.optimizer.reset(self.index, start)
        self._seconds_before = float(self.optimizer.evaluation_seconds)

    def run(self, budget: int, recent_losses: list[float]) -> RunResult:
        return self.optimizer.run({self.index: (budget, recent_losses)})[self.index]

    @property
    def evaluations(self) -> int:
        return int(self.optimizer.evaluations[self.index])

    @property
    def evaluation_seconds(self) -> float:
        """Seconds in loss evaluations since this frame began (with other rows, their batches' whole time)."""
        return float(self.optimizer.evaluation_seconds) - self._seconds_before

    def best_image(self) -> np.ndarray:
        return self.optimizer.best[self.index][None].numpy()

    def best_terms_and_total(self) -> dict[str, float]:
        loss = float(self.optimizer.best_loss[self.index])
        if not math.isfinite(loss):
            return {}
        return {**dict(zip(TERMS, self.optimizer.best_terms[self.index].numpy().tolist())), "total": loss}


class _Adam:
    """Adam in pixel units (learning_rate levels per step at most, about), clipped to the box."""

    BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8

    def __init__(self, optimizer: DeviceOptimizer, shape: tuple[int, ...]):
        self.optimizer = optimizer
        self.moment = tf.Variable(tf.zeros(shape), trainable=False)
        self.velocity = tf.Variable(tf.zeros(shape), trainable=False)
        self.steps = tf.Variable(tf.zeros(shape[0]), trainable=False)

    def reset(self, row: int) -> None:
        _assign_row(self.moment, row, tf.zeros(self.moment.shape[1:]))
        _assign_row(self.velocity, row, tf.zeros(self.velocity.shape[1:]))
        _assign_row(self.steps, row, 0.0)

    def iterate(self, budget: tf.Tensor, running: tf.Tensor):
        """One evaluation and one step for each running row within its budget; the loss reported
        is the evaluated image's, before the step."""
        optimizer = self.optimizer
        counted = running & (optimizer.evaluations < budget)
        loss, terms, gradient = optimizer.evaluate(optimizer.image, counted)
        self.steps.assign(tf.where(counted, self.steps + 1.0, self.steps))
        _update_rows(self.moment, counted, self.BETA1 * self.moment + (1 - self.BETA1) * gradient)
        _update_rows(self.velocity, counted, self.BETA2 * self.velocity + (1 - self.BETA2) * tf.square(gradient))
        steps = _per_pixel(tf.maximum(self.steps, 1.0))
        moment = self.moment / (1 - self.BETA1 ** steps)
        velocity = self.velocity / (1 - self.BETA2 ** steps)
        rate = optimizer.settings.learning_rate
        stepped = _project(optimizer.image - rate * moment / (tf.sqrt(velocity) + self.EPSILON))
        _update_rows(optimizer.image, counted, stepped)
        return counted, tf.zeros_like(counted), loss, terms


class _History:
    """Each row's last `size` (s, y) pairs of L-BFGS, and H·g by the compact representation of
    Byrd, Nocedal and Schnabel (1994): the pairs' dot products with each other are kept in small
    matrices, so an iteration reads the stored pairs twice, in two matrix products (their dot
    products with the gradient and the newest pair; the direction as their weighted sum), where
    the two-loop recursion made two slot copies and four element-wise passes per pair."""

    def __init__(self, shape: tuple[int, ...], size: int):
        rows = shape[0]
        self.rows, self.size = rows, size
        # Slot-major, s and y of a slot side by side: until a row's ring wraps its pairs fill
        # slots 0..count-1, so the stored pairs are a prefix, read in place (no copy).
        self.pairs = tf.Variable(tf.zeros((2 * size, rows, int(np.prod(shape[1:])))), trainable=False)
        # s_i·y_j and y_i·y_j by slot, in float64 for the triangular solves.
        self.sy = tf.Variable(tf.zeros((rows, size, size), tf.float64), trainable=False)
        self.yy = tf.Variable(tf.zeros((rows, size, size), tf.float64), trainable=False)
        self.count = tf.Variable(tf.zeros(rows, tf.int32), trainable=False)
        self.next = tf.Variable(tf.zeros(rows, tf.int32), trainable=False)

    def clear(self, rows: tf.Tensor) -> None:
        self.count.assign(tf.where(rows, 0, self.count))
        self.next.assign(tf.where(rows, 0, self.next))

    def add(self, s: tf.Tensor, y: tf.Tensor, offered: tf.Tensor) -> None:
        """Keep each offered row's pair only with positive curvature, so its inverse Hessian
        estimate stays positive definite. Its dot products with the other pairs are taken at the
        next times_inverse_hessian, in the product that reads the pairs anyway."""
        curvature = _dot(s, y)
        keep = offered & (curvature > CURVATURE_EPSILON * _dot(y, y))
        kept = tf.cast(tf.where(keep)[:, 0], tf.int32)
        slot = 2 * tf.gather(self.next, kept)
        # A scatter writes the slots in place; a sliced assign took ~2 ms per buffer at 128 px on a
        # CPU, 20x longer, as if it copied the whole buffer.
        self.pairs.scatter_nd_update(tf.stack([slot, kept], axis=1), _gather_rows(_flat(s), kept))
        self.pairs.scatter_nd_update(tf.stack([slot + 1, kept], axis=1), _gather_rows(_flat(y), kept))
        self.next.assign(tf.where(keep, (self.next + 1) % self.size, self.next))
        self.count.assign(tf.where(keep, tf.minimum(self.count + 1, self.size), self.count))

    def times_inverse_hessian(self, gradient: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """H·g for each row as γ (rows,) and the pairs' part, H·g = γg + S·u + γY·v (the sum is
        left to the caller's fused pass), H the L-BFGS inverse Hessian of the row's stored pairs
        with H₀ = γI, γ = s·y / y·y of the newest pair (1 with none); v = -R⁻¹Sᵀg,
        u = R⁻ᵀ((D + γYᵀY)R⁻¹Sᵀg - γYᵀg), R the upper triangle of SᵀY (pairs oldest first), D its diagonal."""
        stored = tf.maximum(tf.reduce_max(self.count), 1)  # at least one slot, so the newest can be read
        # (rows, 2·stored, pixels); slots a row has not filled yet get zero weights.
        pairs = tf.transpose(_read(self.pairs)[:2 * stored], [1, 0, 2])
        newest = 2 * tf.where(self.count > 0, (self.next - 1) % self.size, 0)
        flat = _flat(gradient)
        against = tf.stack([flat, tf.gather(pairs, newest, batch_dims=1), tf.gather(pairs, newest + 1, batch_dims=1)],
                           axis=1)
        dots = tf.cast(tf.transpose(_row_products(against, pairs, transpose_b=True), [0, 2, 1]), tf.float64)
        dots = tf.pad(tf.reshape(dots, (-1, stored, 2, 3)), [[0, 0], [0, self.size - stored], [0, 0], [0, 0]])
        s_dots, y_dots = dots[:, :, 0], dots[:, :, 1]  # (rows, size, 3): · g, newest s, newest y
        self._note_newest(newest // 2, s_dots[:, :, 2], y_dots[:, :, 1], y_dots[:, :, 2])
        u, v, gamma = self._coefficients(s_dots[:, :, 0], y_dots[:, :, 0])
        # The rows' count stays static, so _row_products sees one row and takes the 2-D product.
        weights = tf.reshape(tf.stack([u, gamma[:, None] * v], axis=2)[:, :stored], (self.rows, 1, 2 * stored))
        pairs_part = _row_products(tf.cast(weights, tf.float32), pairs)[:, 0]
        return tf.cast(gamma, tf.float32), tf.reshape(pairs_part, tf.shape(gradient))

    def _note_newest(self, newest, s_dot_new_y, y_dot_new_s, y_dot_new_y) -> None:
        """The newest pair's row and column of SᵀY and YᵀY (again, if it is not new: the same values)."""
        at_newest = tf.one_hot(newest, self.size, on_value=True, off_value=False)
        row, column = at_newest[:, :, None], at_newest[:, None, :]
        sy = tf.where(row, y_dot_new_s[:, None, :], self.sy)
        self.sy.assign(tf.where(column, s_dot_new_y[:, :, None], sy))
        self.yy.assign(tf.where(row | column, tf.where(row, y_dot_new_y[:, None, :], y_dot_new_y[:, :, None]), self.yy))

    def _coefficients(self, s_dot_g, y_dot_g):
        """u and v of times_inverse_hessian, by slot, and γ; zero for slots without a pair."""
        size, count = self.size, self.count.read_value()
        zero, one = tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)
        ages = tf.range(size)
        slots = (self.next[:, None] + ages[None, :]) % size  # oldest first; the first size - count unused
        used = ages[None, :] >= size - count[:, None]
        both = used[:, :, None] & used[:, None, :]
        sy = tf.gather(tf.gather(self.sy, slots, axis=1, batch_dims=1), slots, axis=2, batch_dims=1)
        yy = tf.where(both, tf.gather(tf.gather(self.yy, slots, axis=1, batch_dims=1), slots, axis=2, batch_dims=1), zero)
        # Unused slots get a unit diagonal and zero right-hand sides, so their coefficients are zero.
        r = tf.linalg.band_part(tf.where(both, sy, zero), 0, -1) + tf.linalg.diag(tf.where(used, zero, one))
        d = tf.where(used, tf.linalg.diag_part(sy), zero)
        newest = size - 1
        gamma = tf.where(count > 0, sy[:, newest, newest] / tf.where(count > 0, yy[:, newest, newest], one), one)
        s_dot_g = tf.where(used, tf.gather(s_dot_g, slots, batch_dims=1), zero)
        y_dot_g = tf.where(used, tf.gather(y_dot_g, slots, batch_dims=1), zero)
        w = tf.linalg.triangular_solve(r, s_dot_g[:, :, None], lower=False)
        rhs = d[:, :, None] * w + gamma[:, None, None] * (tf.linalg.matmul(yy, w) - y_dot_g[:, :, None])
        u = tf.linalg.triangular_solve(r, rhs, lower=False, adjoint=True)[:, :, 0]
        by_slot = (ages[None, :] - self.next[:, None]) % size  # each slot's place, oldest first
        return tf.gather(u, by_slot, batch_dims=1), tf.gather(-w[:, :, 0], by_slot, batch_dims=1), gamma


def _row_products(a: tf.Tensor, b: tf.Tensor, transpose_b: bool = False) -> tf.Tensor:
    """Each row's matrix product; with one row, a 2-D product: oneDNN's batched one of the pairs
    took 1.2-2x as long at 256x192 on a CPU."""
    if a.shape[0] == 1:
        return tf.linalg.matmul(a[0], b[0], transpose_b=transpose_b)[None]
    return tf.linalg.matmul(a, b, transpose_b=transpose_b)


def _flat(images: tf.Tensor) -> tf.Tensor:
    """(rows, ...) -> (rows, pixels)."""
    return tf.reshape(images, (tf.shape(images)[0], -1))


class _Lbfgs:
    """Projected L-BFGS with a safeguarded line search (see the module's docstring), every row its
    own: the rows' line searches run in step, each evaluation one batch of all rows; a row whose
    search has ended waits, idle, for the others'."""

    def __init__(self, optimizer: DeviceOptimizer, shape: tuple[int, ...]):
        rows = shape[0]
        self.optimizer = optimizer
        self.pixels = float(np.prod(shape[1:]))
        # A frame's history starts empty and gains at most a pair per evaluation: no more slots
        # than the largest budget could fill (image-sized each, so this is the optimizer's memory).
        settings = optimizer.settings
        budget = max(settings.first_frame_iterations, settings.frame_iterations, settings.coarse_iterations, 1)
        self.history = _History(shape, min(HISTORY, budget))
        self.loss = tf.Variable(tf.zeros(rows), trainable=False)
        self.terms = tf.Variable(tf.zeros((rows, len(TERMS))), trainable=False)
        self.gradient = tf.Variable(tf.zeros(shape), trainable=False)
        self.has_point = tf.Variable(tf.zeros(rows, tf.bool), trainable=False)

    def reset(self, row: int) -> None:
        self.history.clear(tf.range(self.optimizer.rows) == row)
        # No point yet: a zero gradient gives a zero direction, and against an infinite loss the
        # line search accepts its first trial, the start itself. So the start is evaluated at the
        # line search's one call of the loss, and the loss graph is traced once, not twice.
        _assign_row(self.has_point, row, False)
        _assign_row(self.loss, row, math.inf)
        _assign_row(self.gradient, row, tf.zeros(self.gradient.shape[1:]))

    def iterate(self, budget: tf.Tensor, running: tf.Tensor):
        """One line search along the L-BFGS direction for each running row; `moved` where it took
        a step, `failed` where even the gradient direction gave no decrease."""
        optimizer = self.optimizer
        had_point = self.has_point.read_value()
        image, gradient = _read(optimizer.image), _read(self.gradient)
        direction, fresh, slope = self._direction(image, gradient, running)
        found, trial = self._line_search(image, gradient, direction, slope, fresh, budget, running)
        self.history.add(trial.image - image, trial.gradient - gradient, found)
        self._take(found, trial)
        # No decrease found: forget the curvature, retry along -g (a failure if that was -g).
        retry = running & ~found & (optimizer.evaluations < budget)
        self.history.clear(retry)
        return found & had_point, retry & fresh, self.loss.read_value(), self.terms.read_value()

    def _take(self, found: tf.Tensor, trial: "_Point") -> None:
        _update_rows(self.optimizer.image, found, trial.image)
        _update_rows(self.gradient, found, trial.gradient)
        self.loss.assign(tf.where(found, trial.loss, self.loss))
        self.terms.assign(tf.where(found[:, None], trial.terms, self.terms))
        self.has_point.assign(self.has_point | found)

    def _direction(self, image: tf.Tensor, gradient: tf.Tensor, running: tf.Tensor):
        """-H·g over the free pixels (those not held at a bound by their gradient), and its slope
        g·d; `fresh` where it is the plain gradient (no history, or the history gave no descent
        direction)."""
        gamma, pairs_part = self.history.times_inverse_hessian(_free_gradient(image, gradient))
        direction, fresh, slope = _descent_direction(image, gradient, gamma, pairs_part, self.history.count == 0)
        self.history.clear(fresh & running)
        return direction, fresh, slope

    def _line_search(self, image: tf.Tensor, image_gradient: tf.Tensor, direction: tf.Tensor, slope: tf.Tensor,
                     fresh: tf.Tensor, budget: tf.Tensor, running: tf.Tensor) -> tuple[tf.Tensor, "_Point"]:
        """For each running row: backtrack until the Armijo condition holds, extrapolate while the
        slope stays steep. True where a point was accepted, and the best point accepted (carried
        through the loop as tensors: kept in variables, each accepted point cost two image copies)."""
        optimizer = self.optimizer
        # Without curvature yet, step along the gradient of the loss summed over pixels, not averaged
        # (SciPy's first step on stylize's scaled loss): the loss is a mean, so this is O(1) levels
        # at any frame size; the search then grows or shrinks it.
        step = tf.where(fresh, self.pixels, 1.0)
        tries = tf.zeros_like(optimizer.evaluations)
        found, overshot, done = tf.zeros_like(running), tf.zeros_like(running), ~running
        searching = running & (optimizer.evaluations < budget)
        trial = _Point(image, image_gradient, self.loss.read_value(), self.terms.read_value())  # none accepted yet
        while tf.reduce_any(searching):
            point, predicted = _trial_point(image, direction, step, image_gradient)
            loss, terms, gradient = optimizer.evaluate(point, searching)
            tries += tf.cast(searching, tf.int32)
            sufficient = tf.math.is_finite(loss) & (loss <= self.loss + ARMIJO * predicted)
            accepted = searching & sufficient & (~found | (loss < trial.loss))
            rejected = searching & ~accepted
            trial = _Point(*(_where_rows(accepted, new, kept) for new, kept in zip((point, gradient, loss, terms), trial)))
            still_steep = _dot(gradient, direction) < WOLFE * slope
            # An extrapolation that went too far ends the search at the point before it.
            done = tf.where(accepted, overshot | ~still_steep, tf.where(rejected, found, done))
            step = tf.where(accepted, step * EXTRAPOLATE,
                            tf.where(rejected, _backtracked(step, slope, self.loss, loss), step))
            overshot, found = overshot | rejected, found | accepted
            searching = ~done & (tries < MAX_LINE_SEARCH) & (optimizer.evaluations < budget)
        return found, trial


class _Point(NamedTuple):
    """Each row's point with its gradient, loss and terms."""

    image: tf.Tensor
    gradient: tf.Tensor
    loss: tf.Tensor
    terms: tf.Tensor


def _where_rows(rows: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    """new[r] where rows[r], else old[r]. With one row, a tf.cond picks a whole tensor and copies
    nothing; with more, one pass over the images, fused by XLA (TensorFlow's broadcasting tf.where
    is the slow one _update_rows avoids)."""
    if new.shape[0] == 1:
        return tf.cond(rows[0], lambda: new, lambda: old)
    return _select_rows(rows, new, old)


@tf.function(jit_compile=True)
def _select_rows(rows: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.reshape(rows, [-1] + [1] * (len(new.shape) - 1)), new, old)


def _project(image: tf.Tensor) -> tf.Tensor:
    """Into the pixel box."""
    return tf.clip_by_value(image, PIXEL_MIN, PIXEL_MAX)


# Element-wise work on whole images, each fused by XLA into a loop or two; TensorFlow's kernels
# make a pass over the image per operation.
def _held(image: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    """Pixels at a bound that the gradient pushes outward: the projection would undo their step."""
    return ((image <= PIXEL_MIN) & (gradient > 0)) | ((image >= PIXEL_MAX) & (gradient < 0))


@tf.function(jit_compile=True)
def _free_gradient(image: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    return tf.where(_held(image, gradient), 0.0, gradient)


@tf.function(jit_compile=True)
def _descent_direction(image, gradient, gamma, pairs_part, no_history) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """-H·g = -(γg + pairs_part) over the free pixels, or the free gradient's descent where that is
    `fresh`: no history, or no descent along -H·g; and the direction's slope g·d."""
    held = _held(image, gradient)
    direction = tf.where(held, 0.0, -(_per_pixel(gamma) * gradient + pairs_part))
    slope = _dot(gradient, direction)
    fresh = no_history | ~(slope < 0)
    steepest = tf.where(held, 0.0, -gradient)
    return (tf.where(_per_pixel(fresh), steepest, direction), fresh,
            tf.where(fresh, _dot(gradient, steepest), slope))


@tf.function(jit_compile=True)
def _trial_point(image, direction, step, gradient) -> tuple[tf.Tensor, tf.Tensor]:
    """The step along `direction` projected into the box, and its first-order change of the loss (≤ 0)."""
    point = _project(image + _per_pixel(step) * direction)
    return point, _dot(gradient, point - image)


def _backtracked(step: tf.Tensor, slope: tf.Tensor, loss_at_zero: tf.Tensor, loss: tf.Tensor) -> tf.Tensor:
    """The minimum of the quadratic through φ(0), φ'(0) and φ(step), kept within [0.1, 0.5]·step."""
    curvature = loss - loss_at_zero - slope * step
    quadratic = -slope * step * step / (2.0 * tf.maximum(curvature, 1e-30))
    quadratic = tf.where(tf.math.is_finite(loss) & (curvature > 0), quadratic, 0.1 * step)
    return tf.clip_by_value(quadratic, 0.1 * step, 0.5 * step)
