"""File writes that readers and concurrent writers (xdist workers) can rely on; no torch, no numpy.

Kept apart from ``reference`` so the controller and the console script write results, caches and
leaderboards without importing torch.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def user_path(text: str) -> Path:
    """``text`` as a path with ``~`` expanded; an unknown ``~user`` stays as written, so the error that says the
    file or folder is missing names it (``Path.expanduser`` would raise instead)."""
    path = Path(text)
    with contextlib.suppress(RuntimeError):
        path = path.expanduser()
    return path


def output_problem(output: Path, others: dict[str, Path]) -> str | None:
    """Why ``output`` cannot be written without losing something: it is a folder, or the same file as one of
    ``others`` (named by their options: files read, or written too), which would be lost; None when it can."""
    if output.is_dir():
        return f"{output}: is a folder; give a file name in it"
    for option, path in others.items():  # samefile: a case-insensitive file system, a hard link
        if output.resolve() == path.resolve() or (output.exists() and path.exists() and os.path.samefile(output, path)):
            return f"{output} is also {option} {path}: one would overwrite the other; give another file"
    return None


def unwritable(folder: Path, name: str = "") -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), probed as the atomic writers write
    (a temporary file beside the target); None when they can. Checked before work that would be lost."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder {folder} ({exc.strerror})"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".probe"):
            pass
    except OSError as exc:
        return f"cannot write in {folder} ({exc.strerror})"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()
"""What ``open(path, "w")`` would give: temporary files are private (0600), results and caches are shared."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (xdist workers training the same model); no-op without fcntl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: concurrent trainers only duplicate work, writes stay atomic
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
