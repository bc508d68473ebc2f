"""Argument checks, one place for the whole package (configs, layers, decoding, optimizers,
schedules, training): the lowest module of the stack, importing NumPy only.

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
        raise WrongType(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
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


class WrongType(TypeError, ValueError):
    """A value of the wrong type (a str where a number goes, a bool where an int goes): both a
    TypeError and a ValueError, so a config's "invalid value → ValueError" holds too."""


def is_int(value) -> bool:
    """True for a Python or NumPy integer, False for anything else (``True``/``False`` too)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int in [``low``, ``high``] (None: unbounded on that side), or an
    error naming ``name``, the allowed range and the value: ``ValueError("steps must be an
    integer >= 1, got 0")``; a bool or a non-integer is a ``WrongType`` (a TypeError and a ValueError)."""
    if not is_int(value):
        raise WrongType(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            rng = f">= {low}"
        elif low is None:
            rng = f"<= {high}"
        else:
            rng = f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {rng}, got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """``value`` if it is True or False, else a ValueError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
