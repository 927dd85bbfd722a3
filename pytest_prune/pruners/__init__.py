"""Built-in pruners (ShrinkBench's baselines). Importing this package registers them."""

from __future__ import annotations

from . import filters, magnitude, random

__all__ = ["filters", "magnitude", "random"]
