"""One frozen Settings object built from command-line options and their ``prune_*`` ini twins."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import user_path
from .options import (
    CORRUPTION_NAMES,
    DEFAULT_ARCHS,
    DEFAULT_COMPRESSIONS,
    DEFAULT_DATASETS,
    DEFAULT_EPOCHS,
    DEFAULT_EPS,
    DEFAULT_MAX_DROP,
    DEFAULT_PROGRESS,
    DEFAULT_PRUNERS,
    DEFAULT_SEED,
    DEFAULT_THREADS,
    DEFAULT_TOLERANCE,
)

MAX_SEED = 2**40
"""Seeds stay below this, so every seed derived from one (seed · 100,003 + epoch, say) fits torch's 64 bits."""


class SettingsError(ValueError):
    """A bad option value; the message names the option, the value and what is expected."""


@dataclass(frozen=True)
class Settings:
    """Everything the harness reads from options; built once in ``pytest_configure``."""

    bench: bool = False
    conformance: bool = False
    pruners: tuple[str, ...] = DEFAULT_PRUNERS
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    archs: tuple[str, ...] = DEFAULT_ARCHS
    compressions: tuple[float, ...] = DEFAULT_COMPRESSIONS
    epochs: int = DEFAULT_EPOCHS
    recipe: str = "default"
    data_root: Path | None = None
    seed: int = DEFAULT_SEED
    repeats: int = 1
    rounds: int = 1
    device: str = "cpu"
    threads: int = DEFAULT_THREADS
    json_path: Path | None = None
    latency_batches: tuple[int, ...] = (1, 64)
    latency_repeats: int = 15
    max_drop: float | None = None
    min_top1: float | None = None
    robustness: bool = False
    corruptions: tuple[str, ...] = CORRUPTION_NAMES
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    delta: float = 0.5
    eps: tuple[float, ...] = DEFAULT_EPS
    eps_images: int = 250
    eps_draws: int = 10
    leaderboard: Path | None = None
    baseline: Path | None = None
    tolerance: float = DEFAULT_TOLERANCE
    no_cache: bool = False
    progress: float | None = DEFAULT_PROGRESS
    contention: str | None = None  # set per process: xdist workers that time on one accelerator together

    @property
    def schedule(self) -> str:
        """``oneshot`` or ``iterative:N``, as given."""
        return "oneshot" if self.rounds == 1 else f"iterative:{self.rounds}"

    @property
    def finetune_recipe(self) -> Any:
        """The finetuning Recipe: --prune-recipe's, for --prune-epochs epochs."""
        from .recipes import RECIPES

        return RECIPES[self.recipe].with_epochs(self.epochs)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds every cell runs with: ``seed``, ``seed + 1``, … (``repeats`` of them)."""
        return tuple(range(self.seed, self.seed + self.repeats))

    @property
    def effective_max_drop(self) -> float:
        """The top-1 drop allowed where no shipped expectation applies (points)."""
        return DEFAULT_MAX_DROP if self.max_drop is None else self.max_drop


def resolve_device(device: str, worker: str | None, cuda_count: int) -> str:
    """``cuda:auto`` → ``cuda:(N mod cuda_count)`` for xdist worker ``gwN`` (``cuda:0`` outside xdist).

    Any other device is returned unchanged. One GPU per worker: ``-n 4 --prune-device cuda:auto`` on a
    4-GPU host puts each worker on its own GPU.
    """
    if device != "cuda:auto":
        return device
    if cuda_count < 1:
        raise SettingsError("--prune-device cuda:auto: no CUDA device is available; use --prune-device cpu")
    index = int(worker[2:]) if worker and worker.startswith("gw") and worker[2:].isdigit() else 0
    return f"cuda:{index % cuda_count}"


def device_type(device: str) -> str:
    """``cpu``, ``cuda``, ...: the kind of device (``cuda:1`` and ``cuda:auto`` are ``cuda``)."""
    return device.split(":", 1)[0]


def shared_device(device: str, workers: int, cuda_count: int) -> str | None:
    """Why latency contends when ``workers`` xdist workers run on ``device`` (the option as given), or None.

    Workers each hold their own CPU thread(s), but on an accelerator they queue behind each other: an
    explicit device is shared by every worker, ``cuda:auto`` once there are more workers than GPUs.
    """
    if workers < 2 or device_type(device) == "cpu" or (device == "cuda:auto" and workers <= cuda_count):
        return None
    where = f"{cuda_count} GPU(s)" if device == "cuda:auto" else device
    return (
        f"{workers} xdist workers time their models on {where} at once, so latencies and measured speedups "
        "include waiting for each other: time GPU latency without -n, or with --prune-device cuda:auto and a GPU "
        "per worker"
    )


def split_list(values: Sequence[Any] | str | None, spaces: bool = True) -> tuple[str, ...]:
    """Split comma (and, with ``spaces``, whitespace) separated values, keeping order and dropping duplicates.

    SPEC lists split on commas and line breaks only (``spaces=False``): a path may hold a space
    (``"my pruners/x.py:f"``).
    """
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    separators = r"[,\s]+" if spaces else r"\s*[,\r\n]\s*"
    for value in values:  # an ini list of numbers (prune_compression = [2, 4]) arrives as numbers
        for item in re.split(separators, str(value).strip()):
            if item and item not in out:
                out.append(item)
    return tuple(out)


def parse_compressions(values: Sequence[str]) -> tuple[float, ...]:
    """Parse compression targets; each must be a finite number ≥ 1 (``8`` or ``8x``)."""
    out: list[float] = []
    for item in values:
        text = item.lower().removesuffix("x")
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(
                f"--prune-compression: {item!r} is not a number; give a comma list such as 2,4,8,16,32"
            ) from None
        if not math.isfinite(value) or value < 1:
            raise SettingsError(
                f"--prune-compression: {item!r} is below 1 or not finite; compression is total/nonzero "
                "parameters, so 1 means unpruned and 8 keeps one weight in eight"
            )
        if value not in out:
            same = [v for v in out if f"{v:g}" == f"{value:g}"]  # a cell's id holds its compression as {:g}
            if same:
                raise SettingsError(
                    f"--prune-compression: {same[0]:.10g} and {value:.10g} are one cell id ({value:g}x); give each once"
                )
            out.append(value)
    if not out:
        raise SettingsError("--prune-compression: no value given; e.g. --prune-compression 2,4,8")
    return tuple(out)


def _is_off(values: Sequence[str]) -> bool:
    """The word that turns an option off, in any case (``off``, ``Off``, ``OFF``)."""
    return len(values) == 1 and values[0].lower() == "off"


def parse_number(text: str, convert: Callable[[str], Any], lo: float | None = None) -> Any:
    """``convert(text)``, finite and ≥ ``lo``; a ValueError that names ``text`` and what it must be otherwise."""
    try:
        value = convert(text)
    except ValueError:
        kind = "a whole number" if convert is int else "a number"
        raise ValueError(f"{text!r} is not {kind}") from None
    if not math.isfinite(value):  # nan compares false with everything, so it would pass every threshold
        raise ValueError(f"{text!r} is not a finite number")
    if lo is not None and value < lo:
        raise ValueError(f"{text!r} must be ≥ {lo}")
    return value


def _listed(raw: dict[str, Any], key: str, spaces: bool = True) -> tuple[str, ...]:
    """The list option ``key`` split (``split_list``); one given that names nothing (``--prune-corruptions ,``)
    is an error, not the default it would otherwise fall back to."""
    given = raw.get(key)
    values = split_list(given, spaces)
    if not values and given not in (None, "", [], ()):
        text = given if isinstance(given, str) else ",".join(map(str, given))  # a repeated option: a list
        raise SettingsError(
            f"--prune-{key.replace('_', '-')}: {text!r} names nothing; give one or more values separated by commas"
        )
    return values


def _number(name: str, text: str, convert: Callable[[str], Any], lo: float | None = None) -> Any:
    try:
        return parse_number(text, convert, lo)
    except ValueError as error:
        raise SettingsError(f"--prune-{name.replace('_', '-')}: {error}") from None


def parse_schedule(text: str) -> int:
    """``oneshot`` → 1 round, ``iterative:N`` → N rounds (N ≥ 2)."""
    value = text.strip().lower()
    if value == "oneshot":
        return 1
    match = re.fullmatch(r"iterative:(\d+)", value)
    if match is None:
        raise SettingsError(
            f"--prune-schedule: {text!r} is not a schedule; use oneshot or iterative:N (e.g. iterative:3)"
        )
    rounds = int(match.group(1))
    if rounds < 2:
        raise SettingsError(f"--prune-schedule: {text!r} has fewer than 2 rounds; iterative:1 is oneshot")
    return rounds


def _robustness(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"robustness": bool(raw.get("robustness"))}
    if names := _listed(raw, "corruptions"):
        unknown = [n for n in names if n not in CORRUPTION_NAMES]
        if unknown:
            raise SettingsError(
                f"--prune-corruptions: unknown corruption {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(CORRUPTION_NAMES)}"
            )
        out["corruptions"] = names
    if values := _listed(raw, "severities"):
        bad = [v for v in values if v not in {"1", "2", "3", "4", "5"}]
        if bad:
            raise SettingsError(
                f"--prune-severities: {', '.join(map(repr, bad))} outside 1-5; valid severities: 1, 2, 3, 4, 5"
            )
        out["severities"] = tuple(sorted({int(v) for v in values}))
    if values := _listed(raw, "eps"):
        out["eps"] = tuple(_number("eps", v, float, 0) for v in values)
        keys: dict[str, str] = {}  # results are keyed by f"{eps:g}": two radii under one key would overwrite
        for text, radius in zip(values, out["eps"], strict=True):
            if (key := f"{radius:g}") in keys:
                raise SettingsError(
                    f"--prune-eps: {keys[key]!r} and {text!r} are one radius to 6 significant digits; give each once"
                )
            keys[key] = text
    if raw.get("delta") not in (None, ""):
        out["delta"] = _number("delta", str(raw["delta"]), float, 0)
        if out["delta"] >= 100:
            raise SettingsError(
                f"--prune-delta: {out['delta']:g} points is the whole top-1 range, so every sparsity would pass; "
                "give points of top-1 error below 100 (default 0.5)"
            )
    for key in ("eps_images", "eps_draws"):
        if raw.get(key) not in (None, ""):
            out[key] = _number(key, str(raw[key]), int, 1)
    return out


def build(raw: dict[str, Any]) -> Settings:
    """Build Settings from raw option values (``None`` = not given); raises SettingsError."""
    pruners = _listed(raw, "pruner", spaces=False)
    settings: dict[str, Any] = {"bench": bool(raw.get("bench")), "conformance": bool(raw.get("conformance"))}
    if pruners:
        settings["pruners"] = pruners
    for key, attr in (("dataset", "datasets"), ("arch", "archs")):
        if values := _listed(raw, key, spaces=False):
            settings[attr] = values
    if values := _listed(raw, "compression"):
        settings["compressions"] = parse_compressions(values)
    for key, convert, lo in (("epochs", int, 0), ("seed", int, 0), ("threads", int, 1), ("repeats", int, 1)):
        if raw.get(key) not in (None, ""):
            settings[key] = _number(key, str(raw[key]), convert, lo)
    if settings.get("seed", 0) + settings.get("repeats", 1) > MAX_SEED:
        raise SettingsError(
            f"--prune-seed {settings.get('seed', 0)} with --prune-repeats {settings.get('repeats', 1)} passes "
            f"{MAX_SEED}, the largest seed pytest-prune derives its generators' seeds from"
        )
    if raw.get("schedule"):
        settings["rounds"] = parse_schedule(str(raw["schedule"]))
    if raw.get("recipe"):
        from .recipes import RECIPES

        name = str(raw["recipe"]).strip()
        if name not in RECIPES:
            raise SettingsError(f"--prune-recipe: unknown recipe {name!r}; valid: {', '.join(sorted(RECIPES))}")
        settings["recipe"] = name
        settings.setdefault("epochs", RECIPES[name].epochs)
    root = raw.get("data_root") or os.environ.get("PYTEST_PRUNE_DATA")
    if root:
        settings["data_root"] = user_path(str(root))
    if values := _listed(raw, "latency"):
        settings["latency_batches"] = () if _is_off(values) else tuple(_number("latency", v, int, 1) for v in values)
    if raw.get("latency_repeats") not in (None, ""):
        settings["latency_repeats"] = _number("latency_repeats", str(raw["latency_repeats"]), int, 1)
    if raw.get("max_drop") not in (None, ""):
        settings["max_drop"] = _number("max_drop", str(raw["max_drop"]), float, 0)
    if raw.get("min_top1") not in (None, ""):
        value = _number("min_top1", str(raw["min_top1"]), float, 0)
        if value > 100:
            raise SettingsError(f"--prune-min-top1: {value} is above 100; give a percentage")
        if 0 < value <= 1:
            raise SettingsError(
                f"--prune-min-top1: {value} looks like a fraction; give a percentage (e.g. {value * 100:g})"
            )
        settings["min_top1"] = value
    settings.update(_robustness(raw))
    if raw.get("device"):
        settings["device"] = str(raw["device"])
    if raw.get("json"):  # ~ as pytest's --junitxml expands it: `--prune-json=~/r.json` reaches us unexpanded
        settings["json_path"] = user_path(str(raw["json"]))
    for key in ("leaderboard", "baseline"):
        if raw.get(key):
            settings[key] = user_path(str(raw[key]))
    if raw.get("tolerance") not in (None, ""):
        settings["tolerance"] = _number("tolerance", str(raw["tolerance"]), float, 0)
    settings["no_cache"] = bool(raw.get("no_cache"))
    if raw.get("progress") not in (None, ""):
        text = str(raw["progress"]).strip()
        try:
            settings["progress"] = None if _is_off((text,)) else parse_number(text, float, 0)
        except ValueError as error:
            raise SettingsError(f"--prune-progress: {error}; give seconds between reports, or off") from None
    return Settings(**settings)
