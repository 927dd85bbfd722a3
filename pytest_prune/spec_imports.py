"""Importing what a ``module:function`` or ``path.py:function`` SPEC names, and telling a SPEC from a name."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .files import user_path


def is_import_spec(spec: str) -> bool:
    target, sep, attr = spec.rpartition(":")
    # "C:\\x.py" has no function part after the colon; a real SPEC has an identifier there.
    return bool(sep and target and attr.isidentifier())


def is_path_target(target: str) -> bool:
    """Whether the part of an import SPEC before its colon names a file (``path.py``), not a module."""
    return target.endswith(".py") or "/" in target or "\\" in target


_WRITTEN: dict[str, str] = {}
"""A SPEC whose relative path the ini file's folder was joined to (``rebased``) → the SPEC as the ini spells it."""


def rebased(spec: str, folder: Path) -> str:
    """``spec`` with the relative path it names (``path.py:function``, or a bare ``path.py``) joined to
    ``folder``, ``~`` expanded; other SPECs as they are. The SPEC as written stays its name (``written``), so
    a cell, a results file and a leaderboard name it the same whatever folder pytest runs from and wherever
    the project is checked out."""
    target, sep, attr = spec.rpartition(":")
    if not (is_import_spec(spec) and is_path_target(target)):
        if not spec.endswith(".py"):
            return spec
        target, sep, attr = spec, "", ""
    joined = f"{folder / user_path(target)}{sep}{attr}"
    if joined != spec:
        _WRITTEN[joined] = spec
    return joined


def written(spec: str) -> str:
    """The SPEC as the user wrote it, for one that ``rebased`` joined to the ini file's folder."""
    return _WRITTEN.get(spec, spec)


def import_target(target: str) -> Any:
    """The module a SPEC's target names: a dotted module, or a ``path.py`` file imported once under a name of its
    own (its folder appended to ``sys.path``, so it imports its siblings)."""
    if is_path_target(target):
        path = user_path(target).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such file {str(path)!r}")
        name = "pytest_prune_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        if str(path.parent) not in sys.path:  # its sibling modules import; appended, so that they shadow
            sys.path.append(str(path.parent))  # nothing installed (`python path.py` would put it first)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    return importlib.import_module(target)


def functions_in(path: str) -> str:
    """`` (functions in it: a, b)`` for the top-level functions of the Python file ``path``, read, not run."""
    import ast

    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return " (the file does not exist or does not parse)" if not Path(path).is_file() else ""
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    return f" (functions in it: {', '.join(names)})" if names else " (it defines no public function)"
