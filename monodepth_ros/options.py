"""Checked types for command-line options: every number is finite and in its range.

Each helper returns a function for ``argparse``'s ``type=``; a bad value becomes argparse's own
one-line error (``argument --lr: expected a finite number, got 'nan'``) and exit status 2, so
no command ever starts with a NaN, an infinity or a value outside what it can use.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f'{value:g}'


def _bounds_text(low: float | None, high: float | None, low_open: bool) -> str:
    above = '>' if low_open else '>='
    if low is not None and high is not None:
        return f'{above} {_number(low)} and <= {_number(high)}'
    if low is not None:
        return f'{above} {_number(low)}'
    return f'<= {_number(high)}' if high is not None else 'finite'


def finite_float(low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (or (low, high] with ``low_open``); None: no bound."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f'expected a finite number, got {text!r}')
        if ((low is not None and (value <= low if low_open else value < low))
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(
                f'expected a number {_bounds_text(low, high, low_open)}, got {text!r}')
        return value
    parse.__name__ = 'finite_float'
    return parse


def bounded_int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high]; None: no bound."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f'expected an integer {_bounds_text(low, high, False)}, got {text!r}')
        return value
    parse.__name__ = 'bounded_int'
    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
positive_float = finite_float(0.0, low_open=True)
non_negative_float = finite_float(0.0)
seed_int = bounded_int(0, 2**32 - 1)     # what numpy's and torch's generators accept


def checked_by(check: Callable[[str], str], name: str) -> Callable[[str], str]:
    """An option type from a function that returns the value or raises ValueError (one line)."""
    def parse(text: str) -> str:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = name
    return parse
