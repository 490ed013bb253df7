"""Descriptive statistics without third-party libraries, for small data sets."""

from collections import Counter
from math import sqrt


def mean(values: list[float]) -> float:
    """Arithmetic mean. Raises ValueError on an empty list."""
    if not values:
        raise ValueError("mean of empty list")
    return sum(values) / len(values)


def median(values: list[float]) -> float:
    """Middle value; the mean of the two middle values for an even count."""
    if not values:
        raise ValueError("median of empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def mode(values: list[float]) -> list[float]:
    """All values that occur most often, in ascending order."""
    counts = Counter(values)
    top = max(counts.values())
    return sorted(v for v, c in counts.items() if c == top)


def std_dev(values: list[float], sample: bool = True) -> float:
    """Standard deviation; the sample version divides by n - 1."""
    n = len(values)
    if n < 2:
        raise ValueError("need at least two values")
    m = mean(values)
    squares = sum((v - m) ** 2 for v in values)
    return sqrt(squares / (n - 1 if sample else n))


def moving_average(values: list[float], window: int) -> list[float]:
    """Averages of each run of `window` consecutive values."""
    if window < 1 or window > len(values):
        raise ValueError("window must be between 1 and len(values)")
    running = sum(values[:window])
    result = [running / window]
    for i in range(window, len(values)):
        running += values[i] - values[i - window]
        result.append(running / window)
    return result
