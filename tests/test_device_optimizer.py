import numpy as np
import pytest
import tensorflow as tf

from pipeline.device_optimizer import _History


def two_loop(pairs: list[tuple[np.ndarray, np.ndarray]], gradient: np.ndarray) -> np.ndarray:
    """H·g by Nocedal's two-loop recursion over (s, y) pairs, oldest first, in float64."""
    q, alphas = gradient.copy(), []
    for s, y in reversed(pairs):
        alphas.append(s @ q / (s @ y))
        q -= alphas[-1] * y
    if pairs:
        s, y = pairs[-1]
        q *= (s @ y) / (y @ y)
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        q += (alpha - y @ q / (s @ y)) * s
    return q


@pytest.mark.parametrize("rows", [1, 2])
def test_the_compact_inverse_hessian_is_the_two_loop_recursions(rows):
    """A history of 4 slots fed 11 pairs: the ring wraps, row 0's history is cleared midway, and
    in row 1 (where there is one) a pair without positive curvature and pairs not offered are left
    out. At every step each row's H·g equals the two-loop recursion's over the pairs it kept."""
    rng = np.random.default_rng(1)
    shape, size = (2, 6, 5, 3), 4
    history = _History((rows, *shape[1:]), size)
    times_inverse_hessian = tf.function(history.times_inverse_hessian)
    kept: list[list] = [[], []]
    for step in range(11):
        gradient = rng.normal(size=shape).astype(np.float32)[:rows]
        gamma, pairs_part = times_inverse_hessian(tf.constant(gradient))
        result = gamma.numpy()[:, None, None, None] * gradient + pairs_part.numpy()
        for row in range(rows):
            pairs = [(s.astype(np.float64), y.astype(np.float64)) for s, y in kept[row][-size:]]
            expected = two_loop(pairs, gradient[row].ravel().astype(np.float64))
            np.testing.assert_allclose(result[row].ravel(), expected, atol=1e-5 * np.abs(expected).max())
        s = rng.normal(size=shape).astype(np.float32)
        y = s * rng.uniform(0.5, 2.0, size=shape).astype(np.float32)  # curvature 0.5 to 2 per pixel
        if step == 7:
            y[1] = -s[1]
        offered = np.array([True, step % 3 != 1])[:rows]
        s, y = s[:rows], y[:rows]
        history.add(tf.constant(s), tf.constant(y), tf.constant(offered))
        for row in range(rows):
            if offered[row] and s[row].ravel() @ y[row].ravel() > 0:
                kept[row].append((s[row].ravel(), y[row].ravel()))
        if step == 8:
            history.clear(tf.constant([True, False][:rows]))
            kept[0] = []
    assert history.count.numpy().tolist() == [min(len(pairs), size) for pairs in kept[:rows]]
    assert len(kept[0]) == 2 and (rows == 1 or len(kept[1]) > size)  # cleared; wrapped
