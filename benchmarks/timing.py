"""The one timing rule of the benchmark scripts: warm up, then the median of timed rounds."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(call: Callable[[], object], calls: int, repeats: int, warmup: int = 3) -> float:
    """Milliseconds per ``call()``: ``warmup`` untimed calls (allocator, kernels), then the
    median over ``repeats`` rounds of ``calls`` calls each."""
    for _ in range(warmup):
        call()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(rounds)
