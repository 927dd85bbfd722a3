"""Built-in pruners (ShrinkBench's baselines). Importing this package registers them."""

from __future__ import annotations

from . import activation, filters, gradient, magnitude, random

__all__ = ["activation", "filters", "gradient", "magnitude", "random"]
