"""Exceptions pruner authors may raise (torch-free, importable from ``pytest_prune``)."""

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
    """User code (a pruner, an architecture factory, a dataset loader) called ``sys.exit``: an error of the cells
    that needed it, as any other exception would be, not the end of the session (nor a broken fixture)."""
