"""Content-keyed cache of finished cells: a re-run recomputes nothing that it already measured.

A cell's entry is keyed by everything that determines its numbers: the pretrained weights' sha256, the
dataset's content, the source code of its pruner, architecture and dataset factories (with the user modules
they import), the harness's own source, the torch version and the settings that change results
(compression, seed, epochs, schedule, threads, device, finetuning recipe). Latency and robustness are
stages of the entry with keys of their own (the latency batch sizes and repeats; the corruption suite,
severities and eps settings), so turning ``--prune-robustness`` on later computes only the robustness of
cells that were already finetuned.

An entry is ``<key>.json`` (the record's fields per stage) beside ``<key>.pt`` (the finetuned weights, so the
``finetuned_model`` fixture works from the cache too). Both are written atomically as each stage finishes,
so a run killed mid-matrix resumes where it stopped. An entry that fails to parse, names another key or
whose weights do not match their recorded sha256 is reported and recomputed, never trusted.

The entries live in pytest's cache folder (``.pytest_cache/d/pytest_prune/cells``; ``--cache-clear`` wipes
it, ``-o cache_dir=PATH`` moves it, ``--prune-no-cache`` bypasses it).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import io
import json
import pickle
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "pytest-prune-cell/1"


def digest(material: Any) -> str:
    """sha256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def data_digest(data: Any) -> str:
    """sha256 over an ImageDataset's train and test tensors (values, dtypes and shapes)."""
    import torch

    sha = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.test_x, data.test_y):
        cpu = tensor.detach().cpu().contiguous()
        sha.update(f"{cpu.dtype}{tuple(cpu.shape)}".encode())
        sha.update(cpu.view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


@functools.cache
def harness_source() -> str:
    """sha256 over the source files of the installed pytest_prune package: a harness change invalidates."""
    root = Path(__file__).parent
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        sha.update(path.relative_to(root).as_posix().encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def source_of(obj: Any) -> str | None:
    """sha256 of the source file that defines ``obj`` and of the user modules it uses, or None.

    The whole defining module counts, and so does every module of the user's own code its import statements
    reach (``import helpers``, ``from helpers import score``, an import inside a function, and theirs in
    turn): an edit of a helper the pruner imports is a change of the pruner. Installed libraries, the
    standard library and pytest-prune (keyed by ``harness_source``) are not followed. A module loaded by
    other means (``importlib`` on a path) is not seen.

    None means the source cannot be read (a builtin, code typed at a prompt): such a cell is not cached,
    since a change of its code could not be detected. A ``functools.partial`` is its function's file and its
    bound arguments; a callable object is its class's file and its attributes (pickled). Arguments or
    attributes that do not pickle make it None too.
    """
    if isinstance(obj, functools.partial):
        return _with_state(source_of(obj.func), (obj.args, obj.keywords))
    target = inspect.unwrap(obj)
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        return _with_state(source_of(type(target)), getattr(target, "__dict__", {}))
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    path = _source_file(module or target)
    if path is None:
        try:
            return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
        except (OSError, TypeError):
            return None
    sha = hashlib.sha256(path.read_bytes())
    for name, helper in _user_modules(module) if module is not None else []:  # by name: the key is portable
        sha.update(name.encode() + b"\0" + helper.read_bytes())
    return sha.hexdigest()


def _source_file(obj: Any) -> Path | None:
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        return None
    return Path(path) if path is not None and Path(path).is_file() else None


@functools.cache
def _library_roots() -> tuple[Path, ...]:
    """Folders of installed code: the standard library, site-packages (the user's too), and pytest-prune."""
    import site
    import sysconfig

    folders = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    folders.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else "")
    folders.add(str(Path(__file__).parent))
    return tuple(Path(f).resolve() for f in folders if f)


def _is_library(path: Path) -> bool:
    return bool({"site-packages", "dist-packages"} & set(path.parts)) or any(
        path.is_relative_to(root) for root in _library_roots()
    )


def _module_file(name: str) -> Path | None:
    """The source file of the module ``name`` when it is the user's own code (not a library's), else None.

    A module not imported yet is found the way the path finder would find it, one dotted part at a time,
    without importing it or its parent packages; the search ends at the first part that is a library's.
    """
    module = sys.modules.get(name)
    found = _source_file(module) if module is not None else _find_unimported(name)
    if found is None:
        return None
    resolved = found.resolve()
    return None if _is_library(resolved) else resolved


def _find_unimported(name: str) -> Path | None:
    from importlib.machinery import PathFinder

    parts = name.split(".")
    locations: list[str] | None = None  # None: sys.path
    for depth in range(len(parts)):
        prefix = ".".join(parts[: depth + 1])
        loaded = sys.modules.get(prefix)
        if loaded is not None:
            origin, search = getattr(loaded, "__file__", None), getattr(loaded, "__path__", None)
        else:
            try:
                spec = PathFinder.find_spec(prefix, locations)
            except (ImportError, ValueError):
                return None
            if spec is None:
                return None
            origin = spec.origin if spec.has_location else None
            search = spec.submodule_search_locations
        places = [Path(origin)] if origin else []
        places += [Path(folder) for folder in search or []]
        if any(_is_library(place.resolve()) for place in places):
            return None  # a library's module: not followed
        if depth == len(parts) - 1:
            return Path(origin) if origin and origin.endswith(".py") and Path(origin).is_file() else None
        if not search:
            return None  # not a package: ``name`` is an attribute, not a module
        locations = list(search)
    return None


def _imported_names(path: Path, package: str) -> frozenset[str]:
    """Every module an ``import`` statement of the file at ``path`` may name (a from-import's names too, as
    they may be submodules), relative imports resolved against ``package``; parents included."""
    stat = path.stat()
    return _imports_of(path, package, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _imports_of(path: Path, package: str, mtime_ns: int, size: int) -> frozenset[str]:
    """``_imported_names``, parsed once per version of the file (its modification time and size)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except (ImportError, ValueError):
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(".".join(name.split(".")[: i + 1]) for name in names for i in range(name.count(".") + 1))


def _user_modules(module: Any) -> list[tuple[str, Path]]:
    """(name, source file) of the user modules that ``module``'s import statements reach, transitively (an
    import inside a function, a constant from another module, a namespace package), sorted by name;
    ``module`` itself left out. Installed libraries, the standard library and pytest-prune end the walk."""
    own = _source_file(module)
    if own is None or _is_library(own.resolve()):
        return []  # a built-in factory, or a library's: keyed by its file (and pytest-prune's digest) alone
    found: dict[str, Path] = {}
    seen = {module.__name__}
    todo = [(own, module.__name__ if hasattr(module, "__path__") else (module.__package__ or ""))]
    while todo:
        path, package = todo.pop()
        for name in sorted(_imported_names(path, package) - seen):
            seen.add(name)
            if (file := _module_file(name)) is not None and file != own.resolve():
                found[name] = file
                todo.append((file, name if file.name == "__init__.py" else name.rpartition(".")[0]))
    return sorted(found.items())


def _with_state(source: str | None, state: Any) -> str | None:
    """``source`` combined with a digest of ``state`` (pickled), or None when either is unknown."""
    if source is None:
        return None
    try:
        data = pickle.dumps(state, protocol=4)
    except Exception:
        return None
    return hashlib.sha256(source.encode() + hashlib.sha256(data).digest()).hexdigest()


class CorruptEntry(ValueError):
    """A cache entry that cannot be trusted; the message says why."""


@dataclass
class Entry:
    """One cell's cached stages: ``stages[name] = {"key": stage key, "fields": {...}}``."""

    key: str
    material: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights_sha256: str | None = None

    def stage(self, name: str, key: str) -> dict[str, Any] | None:
        """The fields of stage ``name`` if it was stored under ``key``, else None."""
        stage = self.stages.get(name)
        return stage["fields"] if stage is not None and stage.get("key") == key else None


class CellCache:
    """Entries under ``folder`` (None: caching is off and every call is a miss)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def _paths(self, key: str) -> tuple[Path, Path]:
        assert self.folder is not None
        base = self.folder / key[:2] / key
        return base.with_suffix(".json"), base.with_suffix(".pt")

    def load(self, key: str) -> Entry | None:
        """The entry for ``key``; None if there is none; raises CorruptEntry if it cannot be trusted."""
        if self.folder is None:
            return None
        meta_path, _ = self._paths(key)
        if not meta_path.is_file():
            return None
        try:
            document = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptEntry(f"{meta_path.name} is not valid JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("schema") != SCHEMA or document.get("key") != key:
            raise CorruptEntry(f"{meta_path.name} is not a {SCHEMA} entry for its key")
        stages = document.get("stages")
        if not isinstance(stages, dict) or "finetune" not in stages:
            raise CorruptEntry(f"{meta_path.name} has no finetune stage")
        return Entry(key, document.get("material", {}), stages, document.get("weights_sha256"))

    def _weights_payload(self, entry: Entry) -> bytes:
        _, weights_path = self._paths(entry.key)
        try:
            payload = weights_path.read_bytes()
        except OSError as exc:
            raise CorruptEntry(f"{weights_path.name} cannot be read ({exc.strerror or exc})") from None
        actual = hashlib.sha256(payload).hexdigest()
        if actual != entry.weights_sha256:
            raise CorruptEntry(f"{weights_path.name} has sha256 {actual[:12]}…, not the one its entry recorded")
        return payload

    def verify(self, entry: Entry) -> None:
        """Raise CorruptEntry unless the entry's weights file matches its recorded sha256."""
        self._weights_payload(entry)

    def weights(self, entry: Entry) -> dict[str, Any]:
        """The finetuned state dict of ``entry``, verified against its sha256 (raises CorruptEntry)."""
        import torch

        payload = self._weights_payload(entry)
        try:
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # a file that matches its sha but does not load was written by something else
            raise CorruptEntry(f"the weights do not load ({type(exc).__name__}: {exc})") from None

    def save(self, entry: Entry, state_dict: dict[str, Any] | None = None) -> None:
        """Write ``entry`` (and the weights, when given) atomically: weights first, then the JSON naming them."""
        if self.folder is None:
            return
        try:
            self._write(entry, state_dict)
        except OSError as exc:  # the cache only saves time: a full disk must not cost the result just computed
            warnings.warn(f"pytest-prune: cell cache entry not written ({exc}); the result is kept", stacklevel=2)

    def _write(self, entry: Entry, state_dict: dict[str, Any] | None) -> None:
        from .files import atomic_write_bytes

        assert self.folder is not None
        meta_path, weights_path = self._paths(entry.key)
        if state_dict is not None:
            import torch

            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
            payload = buffer.getvalue()
            atomic_write_bytes(weights_path, payload)
            entry.weights_sha256 = hashlib.sha256(payload).hexdigest()
        document = {
            "schema": SCHEMA,
            "key": entry.key,
            "material": entry.material,
            "weights_sha256": entry.weights_sha256,
            "stages": entry.stages,
        }
        atomic_write_bytes(meta_path, (json.dumps(document, indent=1, allow_nan=True) + "\n").encode())
