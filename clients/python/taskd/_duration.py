"""Durations as taskd's API takes them: Go duration strings such as "1.5s"."""

from __future__ import annotations

import datetime
import math
import numbers
import re
from typing import Union

#: A duration: a Go duration string ("30s", "1h30m", "250ms"), a number of
#: seconds, or a :class:`datetime.timedelta`.
Duration = Union[str, int, float, datetime.timedelta]

_NS_PER_S = 1_000_000_000

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # µ, MICRO SIGN
    "\u03bcs": 1e-6,  # μ, GREEK SMALL LETTER MU
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# One "<number><unit>" part of a Go duration. "ms" must come before "m".
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def format_duration(value: Duration) -> str:
    """Return value as a Go duration string for the API.

    Strings are returned unchanged (taskd validates them); numbers are
    seconds, written in seconds with up to nine decimals (``1.5`` →
    ``"1.5s"``, ``30`` → ``"30s"``, ``0.0001`` → ``"0.0001s"``).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a duration must be a string, a number of seconds or a timedelta, not a bool")
    if isinstance(value, datetime.timedelta):
        ns = (value // datetime.timedelta(microseconds=1)) * 1000
    elif isinstance(value, numbers.Integral):
        ns = int(value) * _NS_PER_S
    elif isinstance(value, numbers.Real):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"a duration must be finite, not {value!r}")
        ns = round(seconds * _NS_PER_S)
    else:
        raise TypeError(
            f"a duration must be a string, a number of seconds or a timedelta, not {type(value).__name__}"
        )
    sign = "-" if ns < 0 else ""
    whole, frac = divmod(abs(ns), _NS_PER_S)
    text = str(whole)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return f"{sign}{text}s"


def parse_duration(value: Duration) -> float:
    """Return value in seconds; strings are read as Go reads durations."""
    if isinstance(value, str):
        return _parse_go_duration(value)
    if isinstance(value, bool):
        raise TypeError("a duration must be a string, a number of seconds or a timedelta, not a bool")
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, numbers.Real):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"a duration must be finite, not {value!r}")
        return seconds
    raise TypeError(f"a duration must be a string, a number of seconds or a timedelta, not {type(value).__name__}")


def _parse_go_duration(text: str) -> float:
    s = text
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}: want a Go duration such as 30s, 1.5s or 1h30m")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}: want a Go duration such as 30s, 1.5s or 1h30m")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total
