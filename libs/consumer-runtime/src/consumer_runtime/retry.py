"""Exponential backoff with full jitter (AWS architecture blog's variant), used for every transient retry."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): uniform in [cap/2, cap], cap = initial * 2**(n-1)."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    cap = min(max_s, initial_s * (2 ** min(attempt - 1, 32)))
    r = (rng or random).random()
    return float(cap / 2 + r * cap / 2)
