"""Argument checks shared by the optimizers and the learning-rate schedules.

Each returns the value as a plain Python number or raises an error that names the
argument, the allowed range and the value given: ``ValueError("lr must be >= 0 and
finite, got -1")``.
"""

from __future__ import annotations

import math

import numpy as np


def check_real(name: str, value, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a Python float, or an error naming ``name``, the allowed range and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = (math.isnan(v) or (math.isinf(v) and not allow_inf) or v < low or v > high
           or (low_open and v == low) or (high_open and v == high))
    if bad:
        if math.isinf(high):
            rng = f"{'>' if low_open else '>='} {low:g}"
        else:
            rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        finite = " and finite" if math.isinf(high) and not allow_inf else ""
        raise ValueError(f"{name} must be {rng}{finite}, got {value!r}")
    return v


def check_int(name: str, value, low: int) -> int:
    """``value`` as a Python int >= ``low``, or an error naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)
