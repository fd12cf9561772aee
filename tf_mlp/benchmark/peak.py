"""The machine's float32 matrix-multiply peak: the best of TensorFlow's and numpy's products at several sizes.

One library at one size can read far below the hardware: on a 2-core AVX2
EPYC, TensorFlow's 4096x4096 product ran at 66-98 GFLOP/s while numpy's BLAS
reached 153 at the same sizes, and small products never fill the vector
units. So every size is timed in both libraries, and the peak is the best
of them all, recorded with the library and size that reached it.

A peak, so each figure is the best timing rather than the median: on a
shared machine the median measures the other jobs.
"""

from __future__ import annotations

import time

import numpy as np

SIZES = (1024, 2048, 4096)
QUICK_SIZES = (64, 128)
LIBRARIES = ("tensorflow", "numpy")


def _best_rate(multiply, flops: float, timings: int) -> float:
    multiply()  # warm-up: trace, allocate, spin up the thread pool
    best = 0.0
    for _ in range(timings):
        start = time.perf_counter()
        multiply()
        best = max(best, flops / (time.perf_counter() - start))
    return best


def tensorflow_rate(size: int, timings: int) -> float:
    """FLOP/s of TensorFlow's float32 size x size product (two per call, each consumed, so none is skipped)."""
    import tensorflow as tf

    a, b = tf.random.normal([size, size]), tf.random.normal([size, size])
    multiply = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)) + tf.reduce_sum(tf.matmul(b, a)))
    return _best_rate(lambda: multiply(a, b).numpy(), 2 * 2 * size**3, timings)


def numpy_rate(size: int, timings: int) -> float:
    """FLOP/s of numpy's float32 size x size product (its BLAS, on every core)."""
    generator = np.random.default_rng(0)
    a = generator.standard_normal((size, size), dtype=np.float32)
    b = generator.standard_normal((size, size), dtype=np.float32)
    return _best_rate(lambda: a @ b, 2 * size**3, timings)


def measure(sizes=SIZES, timings: int = 3) -> dict[str, dict[str, float]]:
    """{library: {size: best FLOP/s of `timings` products}} (sizes as strings, as JSON keeps them)."""
    rates = {"tensorflow": tensorflow_rate, "numpy": numpy_rate}
    return {library: {str(size): rates[library](size, timings) for size in sizes} for library in LIBRARIES}


def best_of(measurements: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The best rate of each library and size over several measurements (one per repetition)."""
    return {library: {size: max(measurement[library][size] for measurement in measurements)
                      for size in measurements[0][library]} for library in measurements[0]}


def peak(rates: dict[str, dict[str, float]]) -> tuple[float, str, int]:
    """(FLOP/s, library, size) of the fastest product."""
    flops, library, size = max((rate, library, int(size)) for library, by_size in rates.items()
                               for size, rate in by_size.items())
    return flops, library, size
