"""The speed stage of a cell: structural MACs of the compacted model; dense, masked and compacted latency,
timed side by side in rounds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..train import torch_threads
from . import count_macs, macs_summary
from .latency import Timing, measure_interleaved, probe_inputs, speedup, synchroniser

if TYPE_CHECKING:
    from ..pipeline import Cell


def cell_speed(cell: Cell) -> None:
    """Add the compaction, structural-MAC and latency fields to the record of ``cell``."""
    model, settings = cell.finetuned(), cell.store.settings
    data = cell.store.dataset(cell.case.dataset)
    compaction = cell.compaction()
    with torch_threads(settings.threads):
        structural, _ = macs_summary(count_macs(compaction.model, data.input_shape))
    cell.fields.update(
        compacted=compaction.compacted,
        compacted_params=compaction.params,
        compaction=compaction.note,
        structural_macs=structural,
        structural_speedup=cell.fields["dense_macs"] / max(structural, 1),
    )
    # dense, masked and compacted are timed in rounds side by side, so each speedup compares moments
    # that are milliseconds apart (the dense model is re-timed in every cell for that)
    dense = cell.store.dense(cell.case.dataset, cell.case.arch).model
    models = {"dense": dense, "masked": model}
    if compaction.compacted:
        models["compacted"] = compaction.model
    timings: dict[str, dict[str, Timing]] = {"dense": {}, "masked": {}, "compacted": {}}
    for batch in settings.latency_batches:
        inputs = probe_inputs(data.input_shape, batch, settings.device)
        with torch_threads(settings.threads):
            for kind, timing in measure_interleaved(models, inputs, settings.latency_repeats).items():
                timings[kind][str(batch)] = timing
    medians = {kind: {b: t.median_ms for b, t in by_batch.items()} for kind, by_batch in timings.items()}
    pruned = timings["compacted"] or timings["masked"]
    cell.fields.update(
        dense_latency_ms=medians["dense"],
        masked_latency_ms=medians["masked"],
        compacted_latency_ms=medians["compacted"] or None,
        latency_ms={b: t.median_ms for b, t in pruned.items()},
        latency_iqr_ms={b: t.q3_ms - t.q1_ms for b, t in pruned.items()},
        measured_speedup={b: speedup(timings["dense"][b], t) for b, t in pruned.items()},
        latency_note="; ".join(filter(None, (synchroniser(settings.device)[1], settings.contention))) or None,
    )
