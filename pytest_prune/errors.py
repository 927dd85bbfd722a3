"""Exceptions pruner authors may raise (torch-free, importable from ``pytest_prune``), and the wording of what
user code (a pruner, a factory) raised, ``sys.exit`` included, in the errors that report it."""

from __future__ import annotations


class NotApplicable(ValueError):
    """Raised by a pruner that cannot work on this architecture (e.g. a filter pruner with no removable filter).

    In a benchmark cell it is an error naming the reason; in ``--prune-conformance`` hypothesis rejects that
    example and draws another, so a pruner is only checked where it applies (one that applies nowhere still
    fails hypothesis's health check).
    """


class MissingExtra(ImportError):
    """A feature needs an optional extra that is not installed (or does not import); the message names the extra."""


class UserExit(RuntimeError):
    """User code (an architecture factory, a dataset loader, a model's forward) called ``sys.exit``: an error of
    the cells that needed it, as any other exception would be, not the end of the session (nor a broken
    fixture). A pruner's ``sys.exit`` is its cell's ``PrunerError``, as any exception a pruner raises."""


def raised(exc: BaseException) -> str:
    """What user code did, for an error message: "raised Type: message", or "called sys.exit(code) at file:line"
    (a ``SystemExit``, whose message alone would not say where)."""
    if not isinstance(exc, SystemExit):
        return f"raised {type(exc).__name__}: {exc}"
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    place = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown place"
    return f"called {'sys.exit()' if exc.code is None else f'sys.exit({exc.code!r})'} at {place}"
