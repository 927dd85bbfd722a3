"""The built-in benchmark suite, collected by ``--prune-bench``: one test per matrix cell."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_prune.results import PruneResult


def _active_benchmark(request: pytest.FixtureRequest) -> Any:
    """pytest-benchmark's fixture when the plugin is installed and enabled (it disables itself under xdist)."""
    if not request.config.pluginmanager.hasplugin("benchmark"):
        return None
    session = getattr(request.config, "_benchmarksession", None)
    if session is not None and session.disabled:
        return None  # never create a fixture that will not time: pytest-benchmark warns once per such test
    fixture = request.getfixturevalue("benchmark")
    return None if getattr(fixture, "disabled", True) else fixture


def _time_with_pytest_benchmark(benchmark: Any, request: pytest.FixtureRequest, result: PruneResult) -> None:
    import torch

    from pytest_prune.fixtures import _settings
    from pytest_prune.metrics.latency import WARMUP, probe_inputs, synchroniser

    settings = _settings(request.config)
    cell = request.getfixturevalue("_prune_cell")
    model = cell.compaction().model.eval()
    shape = cell.store.dataset(result.dataset).input_shape
    batch = settings.latency_batches[0]
    inputs = probe_inputs(shape, batch, settings.device)
    sync, _ = synchroniser(settings.device)

    def forward() -> None:
        with torch.inference_mode():
            model(inputs)
        sync()

    benchmark.group = f"{result.dataset}-{result.arch} batch {batch}"
    benchmark.extra_info.update(
        compression=result.compression,
        compacted=result.compacted,
        top1=result.top1,
        structural_speedup=result.structural_speedup,
        dense_latency_ms=result.dense_latency_ms.get(str(batch)),
    )
    benchmark.pedantic(forward, rounds=settings.latency_repeats, warmup_rounds=WARMUP, iterations=1)


def test_prune(
    prune_result: PruneResult,
    _prune_record: dict[str, Any],
    _prune_expectations: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    """Prune, finetune and judge one cell: its top-1 must clear the thresholds that apply to it."""
    from pytest_prune.fixtures import _settings
    from pytest_prune.thresholds import judge

    settings = _settings(request.config)
    computed = _prune_record.get("cache") != "cached"  # a cell served from the cache measures nothing again
    if settings.latency_batches and computed and (benchmark := _active_benchmark(request)) is not None:
        _time_with_pytest_benchmark(benchmark, request, prune_result)
    verdict = judge(_prune_record, settings, _prune_expectations)
    _prune_record.update(threshold=verdict.threshold, required_top1=verdict.required_top1)
    if verdict.failures:
        pytest.fail(f"{prune_result.id}: " + "; ".join(verdict.failures), pytrace=False)
