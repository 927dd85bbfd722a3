"""Size and compute metrics of a model: parameters, nonzeros, MACs (dense and sparsity-aware)."""

from __future__ import annotations

from .counting import FUNCTIONAL, LayerCount, count_macs, count_params, macs_summary, uncounted_modules

__all__ = ["FUNCTIONAL", "LayerCount", "count_macs", "count_params", "macs_summary", "uncounted_modules"]
