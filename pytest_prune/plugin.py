"""pytest hooks of pytest-prune: options, settings, matrix parametrization, the built-in suite, reporting.

This module loads in every pytest run of an environment where pytest-prune is installed, so it imports
neither torch nor numpy; the work lives in modules imported when a prune fixture or option is used.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from . import fixtures
from .files import output_problem, unwritable, user_path
from .fixtures import PUBLIC_FIXTURES
from .options import OPTIONS, ROBUSTNESS_ONLY
from .registry import SpecError, all_builtin
from .settings import Settings, SettingsError, build, resolve_device, shared_device, split_list
from .spec_imports import rebased

SETTINGS = pytest.StashKey[Settings]()
MATRIX = pytest.StashKey[list]()
BENCH_NODEID = "pytest-prune-bench"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prune", "pytest-prune: benchmark pruning methods")
    for option in OPTIONS:
        action = {"bool": "store_true", "list": "append"}.get(option.kind, "store")
        extra = {} if option.kind == "bool" else {"metavar": option.metavar}
        ini: dict[str, Any] = {"type": "bool" if option.kind == "bool" else "string"}
        if option.kind == "list":  # lines of an ini value, each a comma-separated list, or a TOML list
            ini["type"] = "linelist"
        elif option.kind == "string" and pytest.version_tuple[:2] >= (9, 2):
            ini = {"type": str | int | float, "default": None}  # pytest 9's [tool.pytest] table: prune_epochs = 3
        group.addoption(option.flag, action=action, default=None, dest=option.ini, help=option.help, **extra)
        parser.addini(option.ini, f"{option.help} (ini twin of {option.flag})", **ini)
    if not _xdist_installed():
        # `pytest -n auto` spreads the matrix over cores; without pytest-xdist pytest would only say
        # "unrecognized arguments: -n", so pytest-prune takes the option and names the extra that brings it.
        # (A plugin may register a lowercase short option only through the group's private method.)
        add = getattr(group, "_addoption", None)
        if callable(add):
            add("-n", "--numprocesses", dest="prune_numprocesses", default=None, help=argparse.SUPPRESS)


def _xdist_installed() -> bool:
    try:
        return importlib.util.find_spec("xdist") is not None
    except (ImportError, ValueError):
        return False


def _raw_options(config: pytest.Config) -> dict[str, Any]:
    """Command line first, then the ini twin; None where neither is set.

    A relative path in the ini file is relative to the ini file's folder, as pytest's own path ini options
    are (a run from a subfolder finds the same files); on the command line, to the current folder.
    """
    raw: dict[str, Any] = {}
    folder = config.inipath.parent if config.inipath else config.rootpath
    for option in OPTIONS:
        value = config.getoption(option.ini)
        if value is None:
            value = config.getini(option.ini)
            if value is None or value == "" or value == []:  # unset (a TOML 0 or false is a value)
                value = None
            if value is not None and option.paths:
                value = _ini_relative(option.paths, value, folder)
        raw[option.name] = value
    return raw


def _ini_relative(kind: str, value: str | list[str], folder: Path) -> str:
    """``value`` with its relative paths joined to ``folder`` (``~`` expanded): the whole value for a path
    option, the ``path.py`` of each SPEC of a SPEC list (lines or a TOML list) that names one (``rebased``)."""
    if kind == "path":
        return str(folder / user_path(str(value).strip()))
    specs = [rebased(spec, folder) for spec in split_list(value, spaces=False)]
    if not specs:  # names nothing (`prune_pruner = ,`): left as written, for the settings to refuse
        return value if isinstance(value, str) else ",".join(map(str, value))
    return ",".join(specs)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "prune_numprocesses", None) is not None:
        raise pytest.UsageError(
            "-n/--numprocesses needs pytest-xdist, which is not installed: pip install 'pytest-prune[xdist]' "
            "(or run without -n: every cell then runs in this process)"
        )
    config.addinivalue_line(
        "markers",
        "prune(dataset, arch, pruner, compression): a pytest-prune cell; select with e.g. "
        "-m \"prune(pruner='random')\"",
    )
    try:
        settings = build(_raw_options(config))
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    _check_robustness_options(config, settings)
    if settings.device != "cpu":
        settings = _check_device(settings, getattr(config, "workerinput", {}).get("workerid"))
    config.stash[SETTINGS] = settings
    config.pluginmanager.register(fixtures, "pytest_prune.fixtures")
    explicit = settings.bench or settings.conformance or config.getoption("prune_pruner") is not None
    if (explicit or config.getoption("prune_dataset") or config.getoption("prune_arch")) and not _names_known(config):
        _matrix(config)  # explicit names: a typo is a usage error before anything runs
    if not hasattr(config, "workerinput"):  # the controller (or a plain run) gathers records
        from .collector import Collector

        _check_outputs(settings)
        baseline = _baseline(settings) if settings.baseline is not None else None
        command = shlex.join(["pytest", *config.invocation_params.args])
        collector = Collector(settings, baseline, command, cases=lambda: _matrix(config))
        config.pluginmanager.register(collector, "pytest_prune.collector")


def _check_robustness_options(config: pytest.Config, settings: Settings) -> None:
    """Choices of what ``--prune-robustness`` measures, given as ``--prune-*`` options (on the command line or
    in ``addopts``) while it is off, are a usage error: the run would silently measure none of them. As ini
    values (``prune_*`` in the ini file, or ``-o``) they may wait for a run that turns it on."""
    given = [o.flag for o in OPTIONS if o.name in ROBUSTNESS_ONLY and config.getoption(o.ini) is not None]
    if given and not settings.robustness:
        raise pytest.UsageError(
            f"{' and '.join(given)} choose{'s' * (len(given) == 1)} what --prune-robustness measures, but it is "
            "off: add --prune-robustness (or prune_robustness = true in the ini file)"
        )


def _names_known(config: pytest.Config) -> bool:
    """Whether the xdist controller may skip building the matrix: it never collects, and every name is a
    plain built-in (valid without importing torch, which would delay the workers' start by seconds)."""
    if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no" or config.option.collectonly:
        return False  # (xdist collects in the controller under --collect-only)
    settings = config.stash[SETTINGS]
    return all_builtin(settings.pruners, settings.archs, settings.datasets)


def _check_outputs(settings: Settings) -> None:
    """The results JSON and the leaderboard can be written, before any work: a folder, an unwritable place or
    one file for both would otherwise cost the session's results at its end."""
    outputs = {"--prune-json": settings.json_path, "--prune-leaderboard": settings.leaderboard}
    given = {option: path for option, path in outputs.items() if path is not None}
    written: dict[str, Path] = {"--prune-baseline": settings.baseline} if settings.baseline else {}
    for option, path in given.items():
        if problem := output_problem(path, written):  # the baseline, or the results under the leaderboard
            raise pytest.UsageError(f"{option} {problem}")
        written[option] = path
        if problem := unwritable(path.resolve().parent, path.name):
            raise pytest.UsageError(f"{option} {path}: {problem}")


def _baseline(settings: Settings) -> dict[str, Any]:
    """The --prune-baseline results, checked before any work: unreadable or incomparable is a usage error."""
    from .results import environment
    from .results_file import ResultsError, incomparable, load_baseline

    assert settings.baseline is not None
    try:
        document = load_baseline(settings.baseline)
    except ResultsError as exc:
        raise pytest.UsageError(f"--prune-baseline: {exc}") from None
    if why := incomparable(settings.baseline, document["environment"], "this run", environment(settings)):
        raise pytest.UsageError(f"--prune-baseline: {why}; run with the baseline's settings or record a new baseline")
    return document


def _check_device(settings: Settings, worker: str | None) -> Settings:
    """Resolve ``cuda:auto`` for this process; a device torch cannot use is a usage error, not a cell error."""
    import dataclasses

    import torch

    try:
        device = resolve_device(settings.device, worker, torch.cuda.device_count())
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--prune-device: {device!r} is not a torch device ({exc})") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(
            f"--prune-device {device}: torch.cuda.is_available() is False (torch {torch.__version__}); "
            "install a CUDA build of torch or use --prune-device cpu"
        )
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise pytest.UsageError(f"--prune-device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type not in ("cpu", "cuda"):  # mps, xpu, ...: usable only if a tensor goes there and back
        try:
            torch.ones(1, device=parsed).add(1).cpu()
        except Exception as exc:
            raise pytest.UsageError(
                f"--prune-device {device}: torch cannot compute there ({type(exc).__name__}: {exc}); "
                "use cpu, cuda, cuda:N or cuda:auto"
            ) from None
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) if worker else 1
    contention = shared_device(settings.device, workers, torch.cuda.device_count())
    return dataclasses.replace(settings, device=device, contention=contention)


def _matrix(config: pytest.Config) -> list:
    if MATRIX not in config.stash:
        from .matrix import build_matrix

        try:
            config.stash[MATRIX] = build_matrix(config.stash[SETTINGS])
        except SpecError as exc:
            raise pytest.UsageError(f"pytest-prune: {exc}") from None
    return config.stash[MATRIX]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "prune_conformance_pruner" in metafunc.fixturenames:
        pruners = list(dict.fromkeys(case.pruner for case in _matrix(metafunc.config)))
        metafunc.parametrize("prune_conformance_pruner", pruners, ids=pruners, indirect=True)
    if not PUBLIC_FIXTURES.intersection(metafunc.fixturenames):
        return
    params = [
        pytest.param(
            case,
            id=case.id,
            marks=pytest.mark.prune(
                dataset=case.dataset, arch=case.arch, pruner=case.pruner, compression=case.compression
            ),
        )
        for case in _matrix(metafunc.config)
    ]
    metafunc.parametrize("prune_case", params, indirect=True)


class _PackagedModule(pytest.Module):
    """A packaged suite, imported by its package name (never by inserting its folder in sys.path)."""

    module_name: str  # set by collect_suite right after from_parent

    def _getobj(self) -> Any:
        return importlib.import_module(self.module_name)

    @classmethod
    def collect_suite(cls, session: pytest.Session, module_name: str, nodeid: str) -> list:
        path = Path(importlib.import_module(module_name).__file__ or "")
        module = cls.from_parent(session, path=path, nodeid=nodeid)
        module.module_name = module_name
        return list(session.genitems(module))


def _uses_fixtures(item: pytest.Item) -> bool:
    return bool(PUBLIC_FIXTURES.intersection(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so they select bench cells too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    settings = config.stash[SETTINGS]
    if settings.conformance:
        items.extend(_PackagedModule.collect_suite(session, "pytest_prune.conformance", "pytest-prune-conformance"))
    # --prune-pruner on the command line alone asks for a benchmark; its ini twin only configures one, so a
    # `pytest tests/unit` in a project that sets prune_pruner runs no benchmark
    implied = config.getoption("prune_pruner") is not None and not settings.conformance
    if settings.bench or (implied and not any(map(_uses_fixtures, items))):
        items.extend(_PackagedModule.collect_suite(session, "pytest_prune.bench", BENCH_NODEID))
    if hasattr(config, "workerinput") and any(map(_uses_fixtures, items)):
        _costliest_first(items)


MATRIX_OPTIONS = ("prune_dataset", "prune_arch", "prune_compression", "prune_schedule", "prune_repeats")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Matrix options given on the command line of a run in which no cell ran, and no --prune-bench: say what runs
    the benchmark (pytest would only say "no tests ran", or nothing when other tests ran)."""
    collector = config.pluginmanager.get_plugin("pytest_prune.collector")  # the controller's, or a plain run's
    given = [name for name in MATRIX_OPTIONS if config.getoption(name) is not None]
    settings = config.stash.get(SETTINGS, None)
    if (
        collector is None
        or collector.records
        or not given
        or settings is None
        or settings.bench
        or settings.conformance
    ):
        return
    flags = ", ".join("--" + name.replace("_", "-") for name in given)
    terminalreporter.write_line(
        f"pytest-prune: {flags} chose a matrix, but no cell ran: add --prune-bench (or --prune-pruner) to run the "
        "built-in benchmark, or write tests that request prune_result"
    )


def _costliest_first(items: list) -> None:
    """Under xdist, hand out the cells of costly architectures first (longest-processing-time order).

    Every worker sorts its collection the same way, so xdist sees identical collections; the last cells
    left running are then cheap ones and the workers finish together. Serial runs keep the matrix order.
    """
    from .matrix import arch_cost

    def cost(item: pytest.Item) -> float:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("prune_case") if callspec is not None else None
        return arch_cost(case.arch) if case is not None else 0.0

    costs = {id(item): cost(item) for item in items}
    items.sort(key=lambda item: -costs[id(item)])  # stable: equal costs keep their order
