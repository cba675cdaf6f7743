"""Several chains on one device: the frames they optimize evaluated through VGG16 as one batch.

One frame at a time leaves a large GPU mostly idle. With `chains = N` (side_by_side.py) N chains
render in threads, each with its own warm-start chain and its own SciPy L-BFGS-B. Each loss
evaluation a chain asks for waits until every chain that is optimizing a frame at full size has
posed its image; the images then go through VGG16 together and each chain gets its own loss and
gradient back. A chain between frames (reading, flow, saving) or at a coarser size of a cold
frame is not waited for, so the batch is whoever is ready.

Each image's loss has its own content targets and temporal guide, and the batch's total is their
sum, so each image's gradient is its own frame's: a chain renders what it would render alone,
to float rounding (tests/test_batch.py).

The device optimizers (optimizer "lbfgs", "adam") make many iterations inside one compiled call,
so a chain cannot wait for the others between evaluations there. Instead one DeviceOptimizer holds
a row per chain (device_optimizer.py): each chain asks for a chunk of iterations of its frame,
and once every optimizing chain has asked, one call runs them all, every step one evaluation of
the batch, each row with its own line search, history and early stop. The call ends when any
chain's frame ends, so that chain goes on to its next frame while the others ask again. A row
whose chain is between frames is evaluated with the batch but not moved (on a GPU a batch of N
costs little more than one).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
import tensorflow as tf

from .device_optimizer import DeviceOptimizer, Row, RunResult
from .stylize import Stylizer, TemporalGuide


class Stopped(Exception):
    """The render is being stopped: a chain waiting for the batch gives up its frame."""


class BatchedEvaluations:
    """Up to `chains` images of `stylizer`'s shape evaluated as one batch, each with its own targets."""

    def __init__(self, stylizer: Stylizer, chains: int):
        self.stylizer = stylizer
        self._content = {name: tf.Variable(tf.zeros((chains, *target.shape[1:])), trainable=False)
                         for name, target in stylizer.content_targets.items()}
        self._warped = tf.Variable(tf.zeros((chains, *stylizer.shape[1:])), trainable=False)
        self._reliability = tf.Variable(tf.zeros((chains, *stylizer.reliability.shape[1:])), trainable=False)
        self._evaluate = tf.function(self._losses_and_gradients)  # traced once per batch size
        self._turn = threading.Condition()
        self._optimizing: set[int] = set()  # chains whose images a batch waits for
        self._posed: dict[int, object] = {}  # an image to evaluate, or a device chunk's (budget, losses so far)
        self._answers: dict[int, object] = {}
        self._stopped = False
        self.batches = self.images = 0  # batches run (evaluations, or device chunks), and images in them
        self.building = threading.Lock()  # Keras models are made one at a time
        self.chains = chains
        self._device: DeviceOptimizer | None = None

    def chain(self, slot: int) -> "ChainStylizer":
        return ChainStylizer(self, slot)

    def device_row(self, slot: int) -> "BatchedRow":
        """Chain `slot`'s row of the one device optimizer all chains share, made on first use."""
        with self.building:
            if self._device is None:
                rows = tf.range(self.chains)
                self._device = DeviceOptimizer(lambda images: self._losses_and_gradients(images, rows),
                                               self.stylizer.shape, self.stylizer.settings, self.chains)
        return BatchedRow(self, self._device, slot)

    @contextlib.contextmanager
    def optimizing(self, slot: int) -> Iterator[None]:
        """While a chain optimizes a frame, every batch waits for its image."""
        with self._turn:
            self._optimizing.add(slot)
        try:
            yield
        finally:
            with self._turn:
                self._optimizing.discard(slot)
                self._posed.pop(slot, None)
                self._turn.notify_all()  # a batch may have been waiting only for this chain

    def set_targets(self, slot: int, targets: dict[str, tf.Tensor]) -> None:
        with self._turn:  # never while a batch reads them
            for name, variable in self._content.items():
                variable.scatter_update(tf.IndexedSlices(targets[name], [slot]))
            self._warped.scatter_update(tf.IndexedSlices(targets["warped"], [slot]))
            self._reliability.scatter_update(tf.IndexedSlices(targets["reliability"], [slot]))

    def evaluate(self, slot: int, image: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
        """Chain `slot`'s loss, terms and gradient at `image` (1, H, W, 3), once its batch has run."""
        return self._in_turn(slot, image, self._run_batch)

    def run_device(self, slot: int, budget: int, recent_losses: list[float]) -> RunResult:
        """Chain `slot`'s next chunk of device iterations, run with every other optimizing chain's."""
        return self._in_turn(slot, (budget, recent_losses), self._run_device_chunk)

    def _in_turn(self, slot: int, posed, run_batch):
        """Pose `slot`'s request and wait for its answer; whichever chain poses last runs the batch."""
        with self._turn:
            self._posed[slot] = posed
            while slot not in self._answers:
                if self._stopped:
                    raise Stopped
                if self._optimizing <= self._posed.keys():
                    run_batch()
                    self._turn.notify_all()
                else:
                    self._turn.wait()
            answer = self._answers.pop(slot)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _run_device_chunk(self) -> None:
        asked = {slot: self._posed.pop(slot) for slot in sorted(self._posed)}
        try:
            results = self._device.run(asked)
        except Exception as error:  # noqa: BLE001 - as in _run_batch
            self._answers.update({slot: error for slot in asked})
            return
        self.batches, self.images = self.batches + 1, self.images + len(asked)
        self._answers.update(results)

    def stop(self) -> None:
        with self._turn:
            self._stopped = True
            self._turn.notify_all()

    def _run_batch(self) -> None:
        """Every posed image's answer, or the batch's error for each of them to raise."""
        slots = sorted(self._posed)
        images = np.concatenate([self._posed.pop(slot) for slot in slots]).astype(np.float32)
        try:
            totals, terms, gradients = self.evaluate_rows(images, slots)
        except Exception as error:  # noqa: BLE001 - out of memory, say: every chain in the batch raises it
            self._answers.update({slot: error for slot in slots})
            return
        self.batches, self.images = self.batches + 1, self.images + len(slots)
        for row, slot in enumerate(slots):
            self._answers[slot] = (float(totals[row]), {name: float(values[row]) for name, values in terms.items()},
                                   gradients[row:row + 1])

    def evaluate_rows(self, images: np.ndarray, slots: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Totals, terms and gradients of `images` (one per row) against the targets of `slots`."""
        totals, terms, gradients = self._evaluate(tf.constant(images), tf.constant(slots, tf.int32))
        return totals.numpy(), {name: values.numpy() for name, values in terms.items()}, gradients.numpy()

    def _losses_and_gradients(self, images: tf.Tensor, slots: tf.Tensor):
        """Each image's total and terms, and the gradient of their sum: each image's own gradient."""
        stylizer = self.stylizer
        content = {name: tf.gather(variable, slots) for name, variable in self._content.items()}
        warped, reliability = tf.gather(self._warped, slots), tf.gather(self._reliability, slots)
        with tf.GradientTape() as tape:
            tape.watch(images)
            features = stylizer.extractor(images)
            rows = []
            for row in range(images.shape[0]):
                one = slice(row, row + 1)
                rows.append(stylizer.terms({name: f[one] for name, f in features.items()}, images[one],
                                           {name: t[one] for name, t in content.items()}, warped[one],
                                           reliability[one]))
            totals = tf.stack([stylizer.total(terms) for terms in rows])
            summed = tf.reduce_sum(totals)
        terms = {name: tf.stack([terms[name] for terms in rows]) for name in rows[0]}
        return totals, terms, tape.gradient(summed, images)


class ChainStylizer(Stylizer):
    """The shared stylizer as one chain sees it: the same VGG16 and style targets, its frames'
    targets in its own row of the batch, and its evaluations batched with the other chains'.
    Its coarser sizes (cold frames) are its own, evaluated alone."""

    def __init__(self, batch: BatchedEvaluations, slot: int):  # no Stylizer.__init__: nothing new is built
        vars(self).update(vars(batch.stylizer))
        self._at_size, self._device_optimizer = {}, None
        self.batch, self.slot = batch, slot

    def stylize(self, *args, **kwargs):
        with self.batch.optimizing(self.slot):
            return super().stylize(*args, **kwargs)

    def at_size(self, frame_shape: tuple[int, int]) -> Stylizer:
        with self.batch.building:
            return super().at_size(frame_shape)

    def _set_targets(self, content_rgb: np.ndarray, guide: TemporalGuide | None) -> None:
        self.batch.set_targets(self.slot, self.targets(content_rgb, guide))

    def evaluate(self, image: np.ndarray) -> tuple[float, dict[str, float], np.ndarray]:
        return self.batch.evaluate(self.slot, image)

    @property
    def device_optimizer(self) -> Row:
        return self.batch.device_row(self.slot)


class BatchedRow(Row):
    """A chain's row of the shared device optimizer: its chunks run in the batch's turns, and its
    row is set and read only between them."""

    def __init__(self, batch: BatchedEvaluations, optimizer: DeviceOptimizer, slot: int):
        super().__init__(optimizer, slot)
        self.batch = batch

    def reset(self, start: np.ndarray) -> None:
        with self.batch._turn:
            super().reset(start)

    def run(self, budget: int, recent_losses: list[float]) -> RunResult:
        return self.batch.run_device(self.index, budget, recent_losses)

    @property
    def evaluations(self) -> int:
        with self.batch._turn:
            return super().evaluations

    def best_image(self) -> np.ndarray:
        with self.batch._turn:
            return super().best_image()

    def best_terms_and_total(self) -> dict[str, float]:
        with self.batch._turn:
            return super().best_terms_and_total()
