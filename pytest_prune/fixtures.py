"""The public fixtures: prune_case → pretrained_model → pruned_model → finetuned_model → prune_result.

This module imports no torch at import time; the pipeline is imported when a fixture first runs.
Every fixture copies what its cell measured so far into the test's record, also when a stage fails, so
an error report still carries the achieved compression, the amount and whatever else was known.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .results import PROPERTY, PruneResult

if TYPE_CHECKING:
    from .matrix import Case
    from .pipeline import Cell, Store

PUBLIC_FIXTURES = frozenset({"prune_case", "pretrained_model", "pruned_model", "finetuned_model", "prune_result"})


def _settings(config: pytest.Config) -> Any:
    from .plugin import SETTINGS

    return config.stash[SETTINGS]


@pytest.fixture(scope="session")
def _prune_store(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Store:
    from .cache import CellCache
    from .pipeline import Store
    from .progress import for_config

    # Trained references and finished cells persist in pytest's cache (--cache-clear wipes it); without
    # the cache plugin references live for this session only and cells are not cached.
    settings = _settings(pytestconfig)
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("pytest_prune") if cache is not None else tmp_path_factory.mktemp("pytest_prune")
    cells = CellCache(None if cache is None or settings.no_cache else folder / "cells")
    return Store(settings, folder, cells, for_config(pytestconfig, settings.progress))


@pytest.fixture(scope="session")
def _prune_expectations() -> dict[str, Any]:
    from .thresholds import load_expectations

    return load_expectations()


@pytest.fixture
def prune_case(request: pytest.FixtureRequest) -> Case:
    """The cell under test: dataset, arch, pruner, compression, seed (parametrized by pytest-prune)."""
    case = getattr(request, "param", None)
    if case is None:
        pytest.fail("prune_case is parametrized by pytest-prune; request it from a test function", pytrace=False)
    request.node.user_properties.append((PROPERTY, case.to_dict()))
    return case


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """The report carries the cell's record as JSON text (the test's own property stays the live dict): what
    ``--junitxml`` writes is then JSON a dashboard can parse, and what ``-n`` workers send is the record as
    the results file will hold it."""
    report = yield
    report.user_properties = [
        (key, json.dumps(value, allow_nan=True) if key == PROPERTY and isinstance(value, dict) else value)
        for key, value in report.user_properties
    ]
    return report


@pytest.fixture
def prune_conformance_pruner(request: pytest.FixtureRequest) -> Iterator[str]:
    """A pruner name, parametrized by pytest-prune over --prune-pruner for the conformance suite; the test runs
    with --prune-threads torch threads, as the benchmark's cells do."""
    from .train import torch_threads

    with torch_threads(_settings(request.config).threads):
        yield request.param


@pytest.fixture
def _prune_record(prune_case: Case, request: pytest.FixtureRequest) -> dict[str, Any]:
    return next(value for key, value in request.node.user_properties if key == PROPERTY)


@pytest.fixture
def _prune_cell(prune_case: Case, _prune_store: Store) -> Cell:
    return _prune_store.cell(prune_case)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that name a problem with the user's input (data, weights, a name or spec, a setting, a recipe
    that diverges, a pruner's masks, a missing extra, ``sys.exit`` in user code) and what to do: their message
    is the whole report, without the harness's traceback."""
    from .data.disk import DataError
    from .errors import MissingExtra, UserExit
    from .masks import MaskError
    from .reference import WeightsError
    from .registry import SpecError
    from .settings import SettingsError
    from .train import Diverged

    return DataError, WeightsError, SpecError, SettingsError, Diverged, MaskError, MissingExtra, UserExit


def _run(cell: Cell, record: dict[str, Any], stage: str) -> Any:
    __tracebackhide__ = True
    try:
        return getattr(cell, stage)()
    except _user_errors() as exc:
        message = f"{type(exc).__name__}: {exc}"
    finally:
        record.update(cell.fields)
    pytest.fail(message, pytrace=False)  # outside the handler: no "during handling" chain


@pytest.fixture
def pretrained_model(_prune_cell: Cell, _prune_record: dict[str, Any]) -> Iterator[Any]:
    """The shared dense model of the cell's (dataset, arch), in eval mode. Do not modify it."""
    dense = _run(_prune_cell, _prune_record, "dense")
    yield dense.model
    dense.guard(f"{_prune_cell.case.dataset}/{_prune_cell.case.arch}")


@pytest.fixture
def pruned_model(_prune_cell: Cell, _prune_record: dict[str, Any]) -> Any:
    """A copy of the pruned model before finetuning (masked weights are zero)."""
    return copy.deepcopy(_run(_prune_cell, _prune_record, "pruned").model)


@pytest.fixture
def finetuned_model(_prune_cell: Cell, _prune_record: dict[str, Any]) -> Any:
    """A copy of the pruned model after finetuning with masks enforced."""
    return copy.deepcopy(_run(_prune_cell, _prune_record, "finetuned"))


JUNIT_KEYS = (
    "top1",
    "dense_top1",
    "compression_achieved",
    "theoretical_speedup",
    "structural_speedup",
    "excess_error",
    "cache",
)
"""Record fields also written as ``prune_<key>`` properties (JUnit XML ``<property>``), for CI dashboards."""


@pytest.fixture
def prune_result(_prune_cell: Cell, _prune_record: dict[str, Any], request: pytest.FixtureRequest) -> PruneResult:
    """Everything measured for the cell: accuracies (fractions), params, compression, MACs, speedup, latency."""
    _run(_prune_cell, _prune_record, "speed")
    if _prune_cell.store.settings.robustness:
        _run(_prune_cell, _prune_record, "robustness")
    properties = request.node.user_properties
    for key in JUNIT_KEYS:
        if _prune_record.get(key) is not None:
            properties.append((f"prune_{key}", _prune_record[key]))
    for batch, speedup in sorted((_prune_record.get("measured_speedup") or {}).items(), key=lambda kv: int(kv[0])):
        properties.append((f"prune_measured_speedup_batch{batch}", speedup))
    return PruneResult.from_fields(_prune_record)
