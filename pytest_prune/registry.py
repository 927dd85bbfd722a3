"""Name → factory registries for pruners, architectures and datasets, and SPEC resolution.

The registries are module-level on purpose: a decorator registers at import time, before any pytest
config exists (the same trade-off timm makes for its model registry). Everything else lives in
``config.stash``.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, TypeVar, overload

from .spec_imports import functions_in, import_target, is_import_spec, written

F = TypeVar("F", bound=Callable[..., Any])


class SpecError(ValueError):
    """A name or SPEC that cannot be resolved; the message lists what is available."""


@dataclass(frozen=True)
class Broken:
    """A SPEC whose module failed to import: its cells error with this message, the rest run."""

    spec: str
    message: str


_CALLER = object()
"""``register``'s default home: the module that called it."""


class Registry:
    """Factories of one kind (pruner, architecture, dataset), by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._broken: dict[str, Broken] = {}
        self._providers: dict[str, Callable[[str], Callable[..., Any]]] = {}
        self._homes: dict[str, ModuleType] = {}  # the user module that registered each factory, or a SPEC named
        self._by_spec: dict[str, str] = {}  # a bare name a SPEC's function took → that SPEC
        self._renamed: dict[str, str] = {}  # a bare name given up for its SPEC when another SPEC's function clashed

    def add_provider(self, prefix: str, make: Callable[[str], Callable[..., Any]]) -> None:
        """Names ``prefix:REST`` resolve on first use to ``make(REST)`` (e.g. ``tv:resnet18``)."""
        self._providers[prefix] = make

    def _provided(self, name: str) -> bool:
        """Register ``name`` from its prefix's provider if it has one; whether it is now registered."""
        prefix, sep, rest = name.partition(":")
        if name in self._entries or not sep or prefix not in self._providers or not rest:
            return name in self._entries
        self.register(self._providers[prefix](rest), name, home=None)  # whoever asked first is not its home
        return True

    def register(self, fn: F, name: str | None = None, home: Any = _CALLER) -> F:
        """Register ``fn`` under ``name`` (default: its ``__name__``); a clash with another function is an error.

        ``home``: the module it comes from, by default the module that called the decorator (None: none, for
        a factory the harness registers itself); a cached cell's key covers that module's file when ``fn`` is
        defined elsewhere (made by a factory, or wrapped).
        """
        key = name or fn.__name__
        self._check_signature(fn, key)
        current = self._entries.get(key)
        if current is not None and _origin(current) != _origin(fn):
            if not _clash(current, fn):
                return fn  # one file imported twice: the definition registered first serves
            first, second = _origin(current), _origin(fn)
            if second.startswith("pytest_prune.") and not first.startswith("pytest_prune."):
                first, second = second, first  # a conftest registered before the built-ins: the user's must move
            raise SpecError(
                f"{self.kind} name {key!r} is already registered by {first}; "
                f"{second} must use another name, e.g. @{self.kind}({key + '_2'!r})"
            )
        self._entries[key] = fn
        home = _calling_module() if home is _CALLER else home
        if home is not None and home.__name__.partition(".")[0] != "pytest_prune":  # not a built-in's module
            self._homes[key] = home
        return fn

    def _check_signature(self, fn: Callable[..., Any], name: str) -> None:
        """A pruner must take (model, amount, data) and an architecture (input_shape, num_classes): say so when it
        is registered, not as a TypeError in every cell that calls it."""
        arguments = {"pruner": ("model", "amount", "data"), "architecture": ("input_shape", "num_classes")}
        wanted = arguments.get(self.kind)
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin without a signature: nothing to check
            return
        if wanted is not None:
            try:
                signature.bind(*wanted)
            except TypeError:
                raise SpecError(
                    f"{self.kind} {name!r} takes {signature}; {'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind} "
                    f"is called as {name}({', '.join(wanted)})"
                ) from None

    def home(self, name: str) -> ModuleType | None:
        """The user module that registered ``name`` or that its SPEC named, if known (``register``)."""
        return self._homes.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory for ``name``; raises SpecError for an unknown or broken one."""
        if name in self._broken:
            raise SpecError(self._broken[name].message)
        self._provided(name)
        try:
            return self._entries[name]
        except KeyError:
            raise SpecError(self._unknown(name)) from None

    def name_of(self, fn: Callable[..., Any]) -> str | None:
        """The name a function is registered under, if any."""
        for key, value in self._entries.items():
            if value is fn:
                return key
        return None

    def source_hash(self, name: str) -> str:
        """sha256 of the factory's source (for cache keys and records); empty when unavailable."""
        fn = self.get(name)
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            text = _origin(fn)
        return hashlib.sha256(text.encode()).hexdigest()

    def resolve(self, spec: str) -> list[str]:
        """Resolve one SPEC (name, glob, ``module:function``, ``path.py:function``) to registered names."""
        spec = spec.strip()
        if not spec:
            raise SpecError(f"empty {self.kind} SPEC")
        if self._provided(spec):
            return [spec]
        if is_import_spec(spec):
            return [self._resolve_import(spec)]
        if any(ch in spec for ch in "*?["):
            matches = [n for n in self.names() if fnmatch.fnmatchcase(n, spec)]
            if not matches:
                raise SpecError(f"{self.kind} glob {spec!r} matches nothing. {self._available()}")
            return matches
        if spec in self._entries or spec in self._broken:
            return [spec]
        raise SpecError(self._unknown(spec))

    def _resolve_import(self, spec: str) -> str:
        """The name of the function ``spec`` imports (its ``__name__``, or the SPEC as written when that name is
        taken), or, when it gives none, the SPEC as written, recorded as broken."""
        target, _, attr = spec.rpartition(":")
        shown = written(spec)  # an ini file's SPEC as it spells it, though its path was joined to the ini's folder
        try:
            module = import_target(target)
            fn = getattr(module, attr)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            message = (
                f"{self.kind} SPEC {shown!r} does not import: {type(exc).__name__}: {exc}. "
                "Check the path (relative to the current folder on the command line, to the ini file's folder "
                "in the ini file) and the function name."
            )
            return self._break(shown, message)
        if not callable(fn):
            return self._break(shown, f"{self.kind} SPEC {shown!r} names {type(fn).__name__}, not a function")
        if (known := self.name_of(fn)) is not None:
            return known
        name = getattr(fn, "__name__", None) or attr  # a functools.partial or callable object: the SPEC's name
        current = self._entries.get(name)
        if current is not None and current is not fn and _clash(current, fn):
            # the name is taken (a built-in ``random``, a function of that name in another file): the SPEC
            # names this one, so two files' ``prune`` functions compare side by side; another SPEC's function
            # that took the bare name goes by its SPEC too, so names do not depend on the SPECs' order
            if (first := self._by_spec.pop(name, None)) is not None:
                self._entries[first] = self._entries.pop(name)
                if name in self._homes:
                    self._homes[first] = self._homes.pop(name)
                self._renamed[name] = first
            name = shown
        elif current is None:
            self._by_spec[name] = shown
        self.register(fn, name, home=module)
        return name

    def canonical(self, name: str) -> str:
        """``name`` as it stands after every SPEC resolved so far: a bare name given up when another SPEC's
        function of that name came (``_resolve_import``) is its SPEC's."""
        return self._renamed.get(name, name)

    def _break(self, spec: str, message: str) -> str:
        """Record a SPEC that gives no function under the SPEC itself: its cells error with ``message``, and
        its name never shadows a working factory that has (or later takes) the function's bare name."""
        self._broken[spec] = Broken(spec, message)
        return spec

    def _available(self) -> str:
        return f"Available {self.kind}s: {', '.join(self.names()) or '(none)'}."

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        if len(name.split()) > 1:  # "random global_magnitude": a SPEC list splits on commas, keeping paths' spaces
            hint += " Separate several with commas."
        if name.endswith(".py"):
            shown = written(name)
            return f"{self.kind} SPEC {shown!r} names a file, not a function: give {shown}:FUNCTION{functions_in(name)}"
        return f"unknown {self.kind} {name!r}.{hint} {self._available()}"


def _calling_module() -> ModuleType | None:
    """The module of the first frame outside this file: where ``@pruner`` (or ``register``) was called."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return None if frame is None else sys.modules.get(frame.f_globals.get("__name__", ""))


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _clash(current: Callable[..., Any], fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` may not take the name ``current`` holds: another function, not one definition imported twice."""
    where = _definition(current)
    return _origin(current) != _origin(fn) and (where is None or where != _definition(fn))


def _definition(fn: Callable[..., Any]) -> tuple[str, str, str] | None:
    """Where ``fn`` is defined: its resolved source file, first line and qualified name. One file imported both as a
    ``path.py:function`` SPEC and as a module (a unit test's ``from my_pruners import my_pruner``) gives two
    function objects of one definition; None for what has no source file (a builtin)."""
    inner = inspect.unwrap(fn)  # a decorator's wrapper has its own code, shared by every function it wraps
    code = getattr(inner, "__code__", None)
    if code is None:  # a partial, a callable object: nothing to tell two of them apart
        return None
    with contextlib.suppress(OSError, RuntimeError):
        return str(Path(code.co_filename).resolve()), str(code.co_firstlineno), inner.__qualname__
    return None


PRUNERS = Registry("pruner")
ARCHITECTURES = Registry("architecture")
DATASETS = Registry("dataset")


def _decorator(registry: Registry) -> Callable[..., Any]:
    @overload
    def decorate(arg: F) -> F: ...
    @overload
    def decorate(arg: str) -> Callable[[F], F]: ...
    def decorate(arg: Any = None) -> Any:
        if callable(arg):
            return registry.register(arg)

        def wrap(fn: F) -> F:
            return registry.register(fn, arg)

        return wrap

    decorate.__name__ = registry.kind
    decorate.__doc__ = (
        f"Register a {registry.kind}: ``@{registry.kind}`` uses the function's name, "
        f"``@{registry.kind}('name')`` renames it."
    )
    return decorate


pruner = _decorator(PRUNERS)
architecture = _decorator(ARCHITECTURES)
dataset = _decorator(DATASETS)


ENTRY_POINT_GROUP = "pytest_prune.pruners"

BUILTIN_NAMES: dict[str, frozenset[str]] = {
    "pruner": frozenset(
        {
            "global_activation",
            "global_gradient",
            "global_magnitude",
            "l1_filter",
            "layer_activation",
            "layer_gradient",
            "layer_magnitude",
            "random",
            "random_filter",
            "snip",
        }
    ),
    "architecture": frozenset(
        {
            "lenet300_100",
            "lenet5",
            "resnet20",
            "resnet32",
            "resnet44",
            "resnet56",
            "resnet110",
            "vgg11",
            "vgg16",
            "vgg19",
        }
    ),
    "dataset": frozenset({"cifar10", "cifar100", "digits", "fashion_mnist", "imagenet", "mnist", "mnist5k"}),
}
"""The names ``load_builtins`` registers, known without importing torch (a test keeps the two in step)."""


def all_builtin(pruners: Sequence[str], archs: Sequence[str], datasets: Sequence[str]) -> bool:
    """Whether every name is a plain built-in and no third-party pruner package could clash with one.

    Then the names are valid without loading anything, which lets the xdist controller skip torch.
    """
    from importlib.metadata import entry_points

    wanted = (("pruner", pruners), ("architecture", archs), ("dataset", datasets))
    if not all(name.strip() in BUILTIN_NAMES[kind] for kind, names in wanted for name in names):
        return False
    return not entry_points(group=ENTRY_POINT_GROUP)


class EntryPointWarning(UserWarning):
    """A third-party pruner package failed to load; the rest of the session goes on without it."""


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load pruners other packages declare under ``group``; returns the names registered.

    An entry point names a module (importing it runs its ``@pruner`` decorators) or a function (registered
    under the entry point's name unless a decorator already registered it). One that fails to import is a
    warning naming the distribution, never a crash of the whole session.
    """
    from importlib.metadata import entry_points

    names = []
    for point in entry_points(group=group):
        try:
            target = point.load()
        except (Exception, SystemExit) as exc:  # sys.exit on import: a warning too, not the end of the session
            distribution = point.dist.name if point.dist is not None else "an unknown distribution"
            warnings.warn(
                f"pytest-prune: entry point {point.name!r} ({point.value}) of distribution {distribution!r} failed "
                f"to import, its pruners are not available: {type(exc).__name__}: {exc}",
                EntryPointWarning,
                stacklevel=2,
            )
            continue
        if callable(target) and not isinstance(target, type):
            name = PRUNERS.name_of(target)
            if name is None:
                try:
                    PRUNERS.register(target, point.name, home=None)  # its own module defines it
                except SpecError:
                    distribution = point.dist.name if point.dist is not None else "an unknown distribution"
                    warnings.warn(
                        f"pytest-prune: entry point {point.name!r} ({point.value}) of distribution {distribution!r} "
                        f"is not available: the pruner name {point.name!r} is taken by "
                        f"{_origin(PRUNERS.get(point.name))}; the distribution must rename its entry point",
                        EntryPointWarning,
                        stacklevel=2,
                    )
                    continue
                name = point.name
            names.append(name)
    return names


def load_builtins() -> None:
    """Import the built-in pruners, architectures and datasets (imports torch), then third-party pruners."""
    importlib.import_module("pytest_prune.pruners")
    importlib.import_module("pytest_prune.architectures")
    importlib.import_module("pytest_prune.data.embedded")
    importlib.import_module("pytest_prune.data.disk")
    load_entry_points()
