"""What identifies the code of a pruner, architecture or dataset factory: its file and the user modules it
imports, hashed for the cell cache and the keys of trained references.

The import statements of the defining file are read with ``ast`` (an import inside a function, a constant
from another module and a namespace package count), and so are those of every user module they reach,
without importing anything: a module not imported yet is found the way the path finder would find it.
Installed libraries, the standard library and pytest-prune itself (keyed by ``cache.harness_source``) are
not followed. A module loaded by other means (``importlib`` on a path, an import hook) is not seen. The
module that registered a factory, or that its SPEC named, joins the key when it is not the defining one.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import os
import pickle
import sys
from pathlib import Path
from typing import Any


def source_of(obj: Any, home: Any = None) -> str | None:
    """sha256 of the source file that defines ``obj`` and of the user modules its imports reach, or None.

    None means the source cannot be read (a builtin, code typed at a prompt, a file or helper it cannot
    open): such a cell is not cached, since a change of its code could not be detected. A
    ``functools.partial`` is its function's file and its bound arguments; a callable object is its class's
    file and its attributes (pickled). Arguments or attributes that do not pickle make it None too.

    ``home`` is the user module that registered ``obj`` or that a SPEC named: where ``obj`` is made by a
    factory or wrapped by a decorator of another file (``mine = pruner(make(1.0))``), the values it was made
    with live there, so that file and its imports join the key.
    """
    own = _source_of(obj)
    home_file = _user_source(_loaded_file(home)[0]) if home is not None else None
    if own is None or home_file is None or home_file == _user_source(_defining_file(obj)):
        return own
    try:
        sha = hashlib.sha256(f"{own}\0{_file_digest(home_file)}".encode())
        for name, digest in _user_modules(home):
            sha.update(f"{name}\0{digest}".encode())
    except OSError:
        return None
    return sha.hexdigest()


def _defining_file(obj: Any) -> str | None:
    target = inspect.unwrap(obj.func if isinstance(obj, functools.partial) else obj)
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(target)
    path = _module_and_file(target)[1]
    return None if path is None else str(path)


def _module_and_file(target: Any) -> tuple[Any, Path | None]:
    """The module a function or class was defined in (if imported) and its source file."""
    module = sys.modules.get(getattr(target, "__module__", "") or "")
    return module, _source_file(module or target)


def _source_of(obj: Any) -> str | None:
    if isinstance(obj, functools.partial):
        return _with_state(_source_of(obj.func), (obj.args, obj.keywords))
    target = inspect.unwrap(obj)
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        return _with_state(_source_of(type(target)), getattr(target, "__dict__", {}))
    module, path = _module_and_file(target)
    if path is None:
        try:
            return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()
        except (OSError, TypeError):
            return None
    try:
        sha = hashlib.sha256(path.read_bytes())
        for name, digest in _user_modules(module) if module is not None else []:  # by name: the key is portable
            sha.update(f"{name}\0{digest}".encode())
    except OSError:  # a helper that cannot be read: a change to it could not be seen
        return None
    return sha.hexdigest()


def _with_state(source: str | None, state: Any) -> str | None:
    """``source`` combined with a digest of ``state`` (pickled), or None when either is unknown."""
    if source is None:
        return None
    try:
        data = pickle.dumps(state, protocol=4)
    except Exception:
        return None
    return hashlib.sha256(source.encode() + hashlib.sha256(data).digest()).hexdigest()


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _source_file(obj: Any) -> Path | None:
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        return None
    return Path(path) if path is not None and Path(path).is_file() else None


def _loaded_file(module: Any) -> tuple[str | None, Any]:
    """``__file__`` and ``__path__`` of an imported module, read without running a lazily loaded one."""
    try:
        namespace = object.__getattribute__(module, "__dict__")
    except AttributeError:
        return None, None
    return namespace.get("__file__"), namespace.get("__path__")


@functools.cache
def _library_roots() -> tuple[str, ...]:
    """Folders of installed code: the standard library, site-packages (the user's too), and pytest-prune."""
    import site
    import sysconfig

    folders = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    folders.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else "")
    folders.add(str(Path(__file__).parent))
    return tuple(os.path.realpath(f) + os.sep for f in folders if f)


@functools.cache
def _is_library(path: str) -> bool:
    """Whether the file or folder at ``path`` is installed code (a ``site-packages`` or ``dist-packages``
    folder anywhere on its way counts: a ``--target`` or ``PYTHONPATH`` install)."""
    real = os.path.realpath(path)
    parts = set(Path(real).parts)
    return "site-packages" in parts or "dist-packages" in parts or (real + os.sep).startswith(_library_roots())


def _user_source(path: str | None) -> str | None:
    """The real path of ``path`` when it is a Python source file of the user's own code, else None."""
    if not path or not path.endswith(".py") or not os.path.isfile(path) or _is_library(path):
        return None
    return os.path.realpath(path)


def _module_file(name: str) -> str | None:
    """The real path of the source file of the module ``name`` when it is the user's own code, else None."""
    module = sys.modules.get(name)
    return _user_source(_loaded_file(module)[0] if module is not None else _find_unimported(name))


def _find_unimported(name: str) -> str | None:
    """The source file the path finder would load for ``name``, one dotted part at a time, importing
    nothing; None at the first part that is a library's, missing, or not a package."""
    from importlib.machinery import PathFinder

    parts = name.split(".")
    locations: list[str] | None = None  # None: sys.path
    for depth in range(len(parts)):
        prefix = ".".join(parts[: depth + 1])
        loaded = sys.modules.get(prefix)
        if loaded is not None:
            origin, search = _loaded_file(loaded)
        else:
            try:
                spec = PathFinder.find_spec(prefix, locations)
            except Exception:  # e.g. a nested namespace package whose parent is not imported
                return None
            if spec is None:
                return None
            origin = spec.origin if spec.has_location else None
            search = spec.submodule_search_locations
        places = ([origin] if origin else []) + [str(folder) for folder in search or []]
        if any(_is_library(place) for place in places):
            return None  # a library's module: not followed
        if depth == len(parts) - 1:
            return origin
        if not search:
            return None  # not a package: ``name`` is an attribute, not a module
        locations = [str(folder) for folder in search]
    return None


_IMPORTS: dict[tuple[str, str], frozenset[str]] = {}
"""Module names a file's imports may name, per (sha256 of its content, package): parsed once per content."""


def _imports_of(source: bytes, digest: str, package: str) -> frozenset[str]:
    """Every module an ``import`` statement of ``source`` may name (a from-import's names too, as they may be
    submodules), relative imports resolved against ``package``; parents included."""
    if (digest, package) in _IMPORTS:
        return _IMPORTS[digest, package]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = ast.Module(body=[], type_ignores=[])
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
    found = frozenset(".".join(name.split(".")[: i + 1]) for name in names for i in range(name.count(".") + 1))
    _IMPORTS[digest, package] = found
    return found


def _user_modules(module: Any) -> list[tuple[str, str]]:
    """(name, sha256 of its source) of the user modules that ``module``'s import statements reach,
    transitively, sorted by name; ``module`` itself left out. Raises OSError for a file it cannot read."""
    file, search = _loaded_file(module)
    own = _user_source(file)
    if own is None:
        return []  # a built-in factory, or a library's: keyed by its file (and pytest-prune's digest) alone
    found: dict[str, str] = {}
    seen = {module.__name__}
    package = module.__name__ if search is not None else (module.__package__ or "")
    todo: list[tuple[str | None, str, str]] = [(None, own, package)]
    while todo:
        name, path, package = todo.pop()
        source = Path(path).read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        if name is not None:
            found[name] = digest
        for imported in sorted(_imports_of(source, digest, package) - seen):
            seen.add(imported)
            if (file := _module_file(imported)) is not None and file != own:
                parent = imported if os.path.basename(file) == "__init__.py" else imported.rpartition(".")[0]
                todo.append((imported, file, parent))
    return sorted(found.items())
