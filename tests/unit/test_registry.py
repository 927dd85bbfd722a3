from __future__ import annotations

import functools
import importlib
import textwrap

import pytest

from pytest_prune.registry import Registry, SpecError, _decorator


@pytest.fixture
def registry():
    return Registry("pruner")


def test_decorator_registers_by_name_and_renames(registry):
    deco = _decorator(registry)

    @deco
    def alpha(model, amount, data): ...

    @deco("beta-2")
    def beta(model, amount, data): ...

    assert registry.names() == ["alpha", "beta-2"] and registry.get("beta-2") is beta


def test_a_clash_between_two_functions_is_an_error(registry):
    def one(model, amount, data): ...

    def two(model, amount, data): ...

    registry.register(one, "same")
    registry.register(one, "same")  # the same function again (a re-import) is fine
    with pytest.raises(SpecError, match="'same' is already registered by .*one; .*two must use another name"):
        registry.register(two, "same")


def test_a_user_function_registered_before_a_builtin_of_its_name_is_the_one_told_to_move():
    """A root conftest registers before the built-ins load: the clash still names the user's function."""
    registry = Registry("dataset")

    def cifar10(root=None): ...

    namespace = {"__name__": "pytest_prune.data.disk"}
    exec(compile("def cifar10(root=None): ...", "disk.py", "exec"), namespace)  # a built-in of that name
    builtin = namespace["cifar10"]
    registry.register(cifar10)
    with pytest.raises(SpecError, match=r"registered by pytest_prune.data.disk.cifar10; .*\.cifar10 must use"):
        registry.register(builtin)


def test_resolve_names_globs_and_unknowns(registry):
    for name in ("global_magnitude", "layer_magnitude", "random"):
        registry.register(lambda m, a, d: None, name)
    assert registry.resolve("*magnitude") == ["global_magnitude", "layer_magnitude"]
    assert registry.resolve("random") == ["random"]
    with pytest.raises(SpecError, match="unknown pruner 'globl_magnitude'. Did you mean global_magnitude"):
        registry.resolve("globl_magnitude")
    with pytest.raises(SpecError, match="glob 'x\\*' matches nothing. Available pruners: global_magnitude"):
        registry.resolve("x*")
    with pytest.raises(SpecError, match="unknown pruner 'random global_magnitude'.* Separate several with commas"):
        registry.resolve("random global_magnitude")  # a SPEC list splits on commas only


def test_resolve_path_and_module_specs(registry, tmp_path, monkeypatch):
    source = textwrap.dedent(
        """
        def mine(model, amount, data):
            return None
        """
    )
    (tmp_path / "my_pruners.py").write_text(source)
    (tmp_path / "pkg_pruners.py").write_text(source.replace("mine", "theirs"))
    monkeypatch.chdir(tmp_path)
    assert registry.resolve("my_pruners.py:mine") == ["mine"]
    assert registry.resolve("./my_pruners.py:mine") == ["mine"]  # the same file is imported once
    monkeypatch.syspath_prepend(tmp_path)
    assert registry.resolve("pkg_pruners:theirs") == ["theirs"]


def test_a_spec_naming_a_partial_or_a_callable_object_registers_it_under_the_specs_name(
    registry, tmp_path, monkeypatch
):
    source = textwrap.dedent(
        """
        import functools

        def _scaled(model, amount, data, scale):
            return None

        class Pruner:
            def __call__(self, model, amount, data):
                return None

        halved = functools.partial(_scaled, scale=0.5)
        instance = Pruner()
        """
    )
    (tmp_path / "odd_pruners.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    assert registry.resolve("odd_pruners.py:halved") == ["halved"]
    assert registry.resolve("odd_pruners.py:instance") == ["instance"]
    assert registry.resolve("odd_pruners.py:halved") == ["halved"]  # resolved again: the same entry


def test_one_file_as_a_spec_and_as_an_imported_module_is_one_definition(registry, tmp_path, monkeypatch):
    """A unit test's `from my_pruners import mine` beside `--prune-pruner my_pruners.py:mine` imports the file
    twice (two modules, two function objects): the same definition, no clash. Another file's `mine` clashes."""
    (tmp_path / "my_pruners.py").write_text("def mine(model, amount, data):\n    return None\n")
    (tmp_path / "other.py").write_text("def mine(model, amount, data):\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    assert registry.resolve("my_pruners.py:mine") == ["mine"]
    monkeypatch.syspath_prepend(tmp_path)
    imported = importlib.import_module("my_pruners")
    assert imported.mine is not registry.get("mine")
    registry.register(imported.mine)
    assert registry.get("mine") is not imported.mine  # the definition registered first serves
    with pytest.raises(SpecError, match="'mine' is already registered by pytest_prune_user_.*other.mine must use"):
        registry.register(importlib.import_module("other").mine)


def test_a_spec_whose_function_name_is_taken_is_named_by_the_spec(registry, tmp_path, monkeypatch):
    """Two files' `prune` functions (or a file's `random` beside the built-in) compare side by side: the second
    takes its SPEC as its name instead of stopping the session."""
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "p.py").write_text(f"def prune(model, amount, data):\n    return {value}\n")
    monkeypatch.chdir(tmp_path)
    assert registry.resolve("a/p.py:prune") == ["prune"]  # alone, a SPEC's function takes its own name
    assert registry.resolve("b/p.py:prune") == ["b/p.py:prune"]
    assert registry.canonical("prune") == "a/p.py:prune"  # both go by their SPECs, whichever came first
    assert registry.resolve("b/p.py:prune") == ["b/p.py:prune"]  # resolved again: the same entry
    assert registry.resolve("a/p.py:prune") == ["a/p.py:prune"]
    assert (registry.get("a/p.py:prune")(None, 0, None), registry.get("b/p.py:prune")(None, 0, None)) == (1, 2)
    other = Registry("pruner")  # the other order, as the matrix resolves: every SPEC, then the names
    resolved = [n for spec in ("b/p.py:prune", "a/p.py:prune") for n in other.resolve(spec)]
    assert [other.canonical(n) for n in resolved] == ["b/p.py:prune", "a/p.py:prune"]


@pytest.mark.parametrize(
    "wrap", [functools.partial, functools.lru_cache, lambda fn: functools.wraps(fn)(lambda *a: fn(*a))]
)
def test_two_wrapped_functions_of_one_name_still_clash(registry, wrap):
    """A wrapper's code (or none, for a partial) is no definition of its own: two pruners must not pass as one."""
    first, second = {"__name__": "a"}, {"__name__": "b"}  # two user modules, each with its own `mine`
    exec(compile("def mine(m, a, d): return 'A'", "a.py", "exec"), first)
    exec(compile("def mine(m, a, d): return 'B'", "b.py", "exec"), second)
    registry.register(wrap(first["mine"]), "mine")
    with pytest.raises(SpecError, match="'mine' is already registered"):
        registry.register(wrap(second["mine"]), "mine")


def test_a_spec_that_does_not_import_breaks_only_its_own_name(registry, tmp_path):
    broken, missing = f"{tmp_path / 'broken.py'}:fn", f"{tmp_path / 'missing.py'}:fn"
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    assert registry.resolve(broken) == [broken]
    with pytest.raises(SpecError, match="does not import: RuntimeError: boom at import"):
        registry.get(broken)
    assert registry.resolve(missing) == [missing]
    with pytest.raises(SpecError, match="FileNotFoundError: no such file"):
        registry.get(missing)
    with pytest.raises(SpecError, match="does not import: RuntimeError"):  # the first is still broken its own way
        registry.get(broken)


def test_a_broken_spec_never_shadows_a_working_factory_of_the_same_name(registry, tmp_path):
    """Its cells error; those of a registered function with the bare name, before or after it, still run."""

    def fn(model, amount, data): ...

    registry.register(fn)
    (tmp_path / "later.py").write_text("def other(model, amount, data):\n    pass\n")
    assert registry.resolve(f"{tmp_path / 'missing.py'}:fn") == [f"{tmp_path / 'missing.py'}:fn"]
    assert registry.resolve(f"{tmp_path / 'missing.py'}:other") == [f"{tmp_path / 'missing.py'}:other"]
    assert registry.resolve(f"{tmp_path / 'later.py'}:other") == ["other"]
    assert registry.get("fn") is fn and registry.get("other").__module__.startswith("pytest_prune_user_")


class FakeDistribution:
    name = "pytest-prune-thirdparty"


class FakeEntryPoint:
    def __init__(self, name, value, target=None, error=None):
        self.name, self.value, self.dist = name, value, FakeDistribution()
        self._target, self._error = target, error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._target


@pytest.mark.parametrize("error", [ImportError("No module named 'cuda_only_dep'"), SystemExit("no GPU, bye")])
def test_entry_points_register_pruners_and_a_broken_one_only_warns(monkeypatch, error):
    import importlib.metadata

    from pytest_prune import registry

    def vendor_pruner(model, amount, data):
        return None

    points = [
        FakeEntryPoint("vendor", "vendor_pkg:vendor_pruner", target=vendor_pruner),
        FakeEntryPoint("broken", "broken_pkg", error=error),  # sys.exit on import too: a warning, not the end
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "g" else [])
    with pytest.warns(registry.EntryPointWarning, match="'broken' .* of distribution 'pytest-prune-thirdparty' failed"):
        names = registry.load_entry_points("g")
    try:
        assert names == ["vendor"] and registry.PRUNERS.get("vendor") is vendor_pruner
    finally:
        registry.PRUNERS._entries.pop("vendor", None)


def test_an_entry_point_whose_name_is_taken_only_warns(monkeypatch):
    import importlib.metadata

    from pytest_prune import registry

    registry.load_builtins()

    def random(model, amount, data):  # a third party's function named like the built-in
        return None

    points = [FakeEntryPoint("random", "vendor_pkg:random", target=random)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "g" else [])
    with pytest.warns(registry.EntryPointWarning, match="'random' .* is not available: the pruner name 'random' is ta"):
        assert registry.load_entry_points("g") == []
    assert registry.PRUNERS.get("random") is not random


def test_arch_cost_orders_architectures_by_their_work():
    from pytest_prune.matrix import arch_cost
    from pytest_prune.registry import load_builtins

    load_builtins()
    costs = [arch_cost(a) for a in ("lenet300_100", "lenet5", "resnet20", "vgg16")]
    assert costs == sorted(costs) and costs[0] > 0
    assert arch_cost("no_such_architecture") == 0.0  # cannot say: keeps its place


def test_the_builtin_manifest_matches_what_load_builtins_registers():
    from pytest_prune import registry

    registry.load_builtins()
    for kind, reg in (
        ("pruner", registry.PRUNERS),
        ("architecture", registry.ARCHITECTURES),
        ("dataset", registry.DATASETS),
    ):
        ours = {name for name in reg.names() if reg.get(name).__module__.startswith("pytest_prune.")}
        assert ours == registry.BUILTIN_NAMES[kind], kind


def test_all_builtin_only_for_plain_built_in_names_and_no_third_party_pruners(monkeypatch):
    import importlib.metadata

    from pytest_prune.registry import all_builtin

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    assert all_builtin(["random", "l1_filter"], ["lenet5", "resnet20"], ["mnist5k"])
    for pruners, archs, datasets in (
        (["randomm"], ["lenet5"], ["mnist5k"]),  # a typo: the full load names the choices
        (["global_*"], ["lenet5"], ["mnist5k"]),  # globs match what is registered, entry points included
        (["my_pruners.py:prune"], ["lenet5"], ["mnist5k"]),
        (["random"], ["tv:resnet18"], ["mnist5k"]),
        (["random"], ["lenet5"], ["cifar11"]),
    ):
        assert not all_builtin(pruners, archs, datasets)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [FakeEntryPoint("vendor", "vendor_pkg")])
    assert not all_builtin(["random"], ["lenet5"], ["mnist5k"])  # it could clash with a built-in name


def test_a_file_spec_without_its_function_names_the_functions_in_it(registry, tmp_path, monkeypatch):
    (tmp_path / "my_pruners.py").write_text("def mine(m, a, d):\n    pass\n\n\ndef _helper():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        SpecError,
        match=r"'my_pruners.py' names a file, not a function: give my_pruners.py:FUNCTION "
        r"\(functions in it: mine\)$",
    ):
        registry.resolve("my_pruners.py")
    with pytest.raises(SpecError, match=r"'absent.py' names a file.*\(the file does not exist or does not parse\)"):
        registry.resolve("absent.py")


def test_a_factory_that_cannot_take_its_arguments_is_refused_when_registered():
    architectures, pruners = Registry("architecture"), Registry("pruner")

    def noargs():
        return None

    with pytest.raises(
        SpecError,
        match=r"architecture 'noargs' takes \(\); an architecture is called as "
        r"noargs\(input_shape, num_classes\)",
    ):
        architectures.register(noargs)
    with pytest.raises(SpecError, match=r"pruner 'two' takes \(model, amount\); a pruner is called as two\(model"):
        pruners.register(lambda model, amount: None, "two")
    pruners.register(lambda model, amount, data, scale=1.0: None, "defaults")  # extra defaults are fine
    pruners.register(functools.partial(lambda model, amount, data, k: None, k=2), "partial")
    architectures.register(lambda *args: None, "star")
