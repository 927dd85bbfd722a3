"""Built-in pruners (ShrinkBench's baselines). Importing this package registers them."""

from __future__ import annotations

from . import magnitude, random

__all__ = ["magnitude", "random"]
