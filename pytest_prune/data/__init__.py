"""Datasets: the in-memory record every dataset factory returns; the embedded ones live in ``embedded``."""

from __future__ import annotations

from .base import Batches, ImageDataset

__all__ = ["Batches", "ImageDataset"]
