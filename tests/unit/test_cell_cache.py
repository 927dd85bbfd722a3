"""The content-keyed cell cache: keys from content, atomic entries, corrupt entries detected."""

from __future__ import annotations

import functools
import json
import sys
import textwrap

import pytest
import torch

from pytest_prune.cache import CellCache, CorruptEntry, Entry, digest, harness_source
from pytest_prune.sources import source_of


def _entry(cache: CellCache, key: str = "ab" + "0" * 62) -> Entry:
    entry = Entry(key, {"pruner": "p"}, {"finetune": {"key": key, "fields": {"top1": 0.9}}})
    cache.save(entry, {"w": torch.arange(6.0).reshape(2, 3)})
    return entry


def test_an_entry_round_trips_with_its_weights(tmp_path):
    cache = CellCache(tmp_path)
    entry = _entry(cache)
    loaded = cache.load(entry.key)
    assert loaded is not None and loaded.stage("finetune", entry.key) == {"top1": 0.9}
    assert loaded.stage("finetune", "another key") is None
    cache.verify(loaded)
    assert torch.equal(cache.weights(loaded)["w"], torch.arange(6.0).reshape(2, 3))
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_a_missing_entry_and_a_disabled_cache_are_misses(tmp_path):
    assert CellCache(tmp_path).load("cd" + "1" * 62) is None
    disabled = CellCache(None)
    assert not disabled.enabled and disabled.load("anything") is None
    disabled.save(Entry("ab" + "0" * 62, {}))  # a no-op, not an error


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda meta, weights: meta.write_text(meta.read_text()[:40]), "is not valid JSON"),
        (lambda meta, weights: meta.write_text(json.dumps({"schema": "other"})), "is not a pytest-prune-cell/1 entry"),
        (lambda meta, weights: weights.write_bytes(weights.read_bytes()[:-10]), "not the one its entry recorded"),
        (lambda meta, weights: weights.unlink(), "cannot be read"),
    ],
    ids=["truncated-json", "foreign-json", "truncated-weights", "missing-weights"],
)
def test_a_damaged_entry_is_reported_never_trusted(tmp_path, damage, message):
    cache = CellCache(tmp_path)
    entry = _entry(cache)
    meta, weights = next(tmp_path.rglob("*.json")), next(tmp_path.rglob("*.pt"))
    damage(meta, weights)
    with pytest.raises(CorruptEntry, match=message):
        loaded = cache.load(entry.key)
        cache.verify(loaded)


def test_keys_depend_on_content_not_on_order():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(harness_source()) == 64 and harness_source() == harness_source()


def test_source_of_hashes_the_defining_file_and_sees_edits(tmp_path, monkeypatch):
    module = tmp_path / "my_pruner_mod.py"
    module.write_text("def prune(model, amount, data):\n    return None\n")
    monkeypatch.syspath_prepend(tmp_path)
    import my_pruner_mod

    before = source_of(my_pruner_mod.prune)
    assert before is not None
    module.write_text(textwrap.dedent(module.read_text()) + "\nHELPER = 1\n")  # a helper in the same file changed
    assert source_of(my_pruner_mod.prune) != before


def test_source_of_sees_edits_of_the_user_modules_a_pruner_imports_but_not_of_libraries(tmp_path, monkeypatch):
    (tmp_path / "my_scores_mod.py").write_text("import my_deeper_mod\n\ndef score(w):\n    return w.abs()\n")
    (tmp_path / "my_deeper_mod.py").write_text("SCALE = 1\n")
    (tmp_path / "my_consts_mod.py").write_text("THRESHOLD = 0.5\n")
    (tmp_path / "my_lazy_mod.py").write_text("X = 1\n")
    (tmp_path / "my_ns_pkg").mkdir()  # a namespace package: no __init__.py
    (tmp_path / "my_ns_pkg" / "tools.py").write_text("Y = 1\n")
    (tmp_path / "my_lazy_ns").mkdir()  # another, imported only inside the function
    (tmp_path / "my_lazy_ns" / "tools.py").write_text("Z = 1\n")
    (tmp_path / "my_lazy_pkg").mkdir()  # a package whose __init__ must not run to key the pruner
    (tmp_path / "my_lazy_pkg" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / "my_lazy_pkg" / "sub.py").write_text("W = 1\n")
    (tmp_path / "my_user_pruner_mod.py").write_text(
        "import torch\n"
        "import my_ns_pkg.tools\n"
        "from my_scores_mod import score\n"
        "from my_consts_mod import THRESHOLD\n\n"
        "def prune(model, amount, data):\n"
        "    import my_lazy_mod  # imported only when it runs\n"
        "    import my_lazy_ns.tools\n"
        "    from my_lazy_pkg.sub import W\n"
        "    from torch.distributed.fsdp import FullyShardedDataParallel  # a library's: never looked into\n"
        "    return None\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    import my_user_pruner_mod

    imported = set(sys.modules)
    for edited in (
        "my_deeper_mod.py",
        "my_consts_mod.py",
        "my_lazy_mod.py",
        "my_ns_pkg/tools.py",
        "my_lazy_ns/tools.py",
        "my_lazy_pkg/sub.py",
    ):
        before = source_of(my_user_pruner_mod.prune)
        (tmp_path / edited).write_text((tmp_path / edited).read_text() + "# edited\n")
        assert source_of(my_user_pruner_mod.prune) != before, edited
    from pytest_prune.sources import _user_modules

    assert [name for name, _ in _user_modules(my_user_pruner_mod)] == [  # no torch, no pytest-prune
        "my_consts_mod",
        "my_deeper_mod",
        "my_lazy_mod",
        "my_lazy_ns.tools",
        "my_lazy_pkg",
        "my_lazy_pkg.sub",
        "my_ns_pkg.tools",
        "my_scores_mod",
    ]
    assert not {name for name in set(sys.modules) - imported if name.startswith(("my_lazy", "torch.distributed"))}


def test_source_of_neither_runs_a_lazily_loaded_helper_nor_fails_on_odd_ones(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    (tmp_path / "my_lazy_loaded_mod.py").write_text("import builtins\nbuiltins.MY_LAZY_RAN = True\n")
    (tmp_path / "my_outer_ns" / "my_inner_ns").mkdir(parents=True)  # namespace packages, neither imported
    (tmp_path / "my_outer_ns" / "my_inner_ns" / "leaf.py").write_text("V = 1\n")
    (tmp_path / "my_unreadable_mod.py").write_text("U = 1\n")
    (tmp_path / "my_odd_pruner_mod.py").write_text(
        "def prune(model, amount, data):\n"
        "    import my_lazy_loaded_mod, my_outer_ns.my_inner_ns.leaf\n"
        "    from my_unreadable_mod import U\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    spec = importlib.util.spec_from_file_location("my_lazy_loaded_mod", tmp_path / "my_lazy_loaded_mod.py")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    lazy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lazy)  # registered, not run until an attribute is read
    monkeypatch.setitem(sys.modules, "my_lazy_loaded_mod", lazy)
    import my_odd_pruner_mod

    assert source_of(my_odd_pruner_mod.prune) is not None
    assert not hasattr(__import__("builtins"), "MY_LAZY_RAN")
    real = Path.read_bytes

    def unreadable(path):
        if path.name == "my_unreadable_mod.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert source_of(my_odd_pruner_mod.prune) is None  # a helper it cannot read: never cached


def test_a_built_in_pruners_key_is_its_file_alone():
    """Built-in keys (and with them the keys of trained references) depend on nothing else installed."""
    import hashlib
    from pathlib import Path

    from pytest_prune.pruners import magnitude

    assert source_of(magnitude.global_magnitude) == hashlib.sha256(Path(magnitude.__file__).read_bytes()).hexdigest()


def test_source_of_a_partial_or_a_callable_object_includes_its_arguments_and_state(tmp_path, monkeypatch):
    import functools

    module = tmp_path / "my_seeded_mod.py"
    module.write_text(
        "import threading\n\n"
        "def prune(model, amount, data, seed=0):\n    return None\n\n\n"
        "class Pruner:\n    def __init__(self, seed):\n        self.seed = seed\n\n"
        "    def __call__(self, model, amount, data):\n        return None\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    import my_seeded_mod

    one, other = (source_of(functools.partial(my_seeded_mod.prune, seed=s)) for s in (1, 12345))
    assert one is not None and other is not None and one != other
    assert source_of(functools.partial(my_seeded_mod.prune, seed=1)) == one  # stable
    assert source_of(my_seeded_mod.Pruner(1)) != source_of(my_seeded_mod.Pruner(2))
    assert source_of(my_seeded_mod.Pruner(1)) == source_of(my_seeded_mod.Pruner(1))
    unpicklable = my_seeded_mod.Pruner(1)
    unpicklable.lock = my_seeded_mod.threading.Lock()
    assert source_of(unpicklable) is None  # state that cannot be keyed: never cached


def test_source_of_a_callable_without_source_is_none():
    namespace: dict = {}
    exec("def made_at_a_prompt(model, amount, data):\n    return None\n", namespace)
    assert source_of(namespace["made_at_a_prompt"]) is None
    assert source_of(len) is None


def test_atomic_writes_get_the_permissions_a_plain_write_would(tmp_path):
    """Results, leaderboards and cache entries are shared files, not mkstemp's private 0600 ones."""
    import os

    from pytest_prune.files import atomic_write_bytes

    atomic_write_bytes(tmp_path / "atomic.json", b"{}")
    (tmp_path / "plain.json").write_bytes(b"{}")
    assert os.stat(tmp_path / "atomic.json").st_mode == os.stat(tmp_path / "plain.json").st_mode


def test_a_cache_that_cannot_be_written_warns_and_keeps_the_result(tmp_path):
    (tmp_path / "cells").write_text("a file where the cache's folder would be")
    cache = CellCache(tmp_path / "cells")
    with pytest.warns(UserWarning, match="cell cache entry not written .*; the result is kept"):
        cache.save(Entry("ab" + "0" * 62, {"pruner": "p"}), {"w": torch.zeros(2)})
    assert cache.load("ab" + "0" * 62) is None


def test_a_factory_made_pruner_is_keyed_by_the_module_that_registers_it_too(tmp_path, monkeypatch):
    from pytest_prune.registry import PRUNERS, load_builtins

    (tmp_path / "my_maker_mod.py").write_text("def make(scale):\n    return lambda model, amount, data: scale\n")
    home = tmp_path / "my_registering_mod.py"
    home.write_text(
        "from my_maker_mod import make\nfrom pytest_prune import pruner\n\n"
        "made_here = pruner('my_made_here')(make(2))\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    import my_registering_mod

    assert PRUNERS.home("my_made_here") is my_registering_mod  # the module that called the decorator
    fn = PRUNERS.get("my_made_here")
    keyed = source_of(fn, my_registering_mod)
    assert keyed is not None and keyed != source_of(fn)  # the maker's file alone misses the value 2
    home.write_text(home.read_text().replace("make(2)", "make(3)"))
    assert source_of(fn, my_registering_mod) != keyed
    load_builtins()
    assert PRUNERS.home("global_magnitude") is None  # a built-in's key stays its file alone


def test_a_provided_factory_has_no_home_whoever_asks_for_it_first():
    """``tv:resnet18`` is registered by its provider on first use: the module that happened to ask first (a
    user's conftest, this test) must not join its key, or the key would depend on import order."""
    from pytest_prune.registry import Registry

    registry = Registry("architecture")
    registry.add_provider("made", lambda rest: functools.partial(lambda name, input_shape, num_classes: name, rest))
    registry.get("made:net")
    assert registry.home("made:net") is None
