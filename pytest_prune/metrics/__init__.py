"""Size and compute metrics of a model: parameters, nonzeros, MACs (dense and sparsity-aware)."""

from __future__ import annotations

from .counting import LayerCount, count_macs, count_params, macs_summary

__all__ = ["LayerCount", "count_macs", "count_params", "macs_summary"]
