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

import functools
import hashlib
import io
import json
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
        sha.update(cpu.view(-1).view(torch.uint8).numpy())  # its buffer: no copy of the data (600 MB for CIFAR-10)
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
