"""Relative paths in the ini file resolve against its folder (plugin-level behaviour: tests/plugin/test_bench.py)."""

from __future__ import annotations

from pathlib import Path

from pytest_prune.plugin import _ini_relative
from pytest_prune.spec_imports import written


def test_paths_and_path_specs_join_the_ini_folder_and_expand_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "project"
    assert _ini_relative("path", "out/results.json", folder) == str(folder / "out/results.json")
    assert _ini_relative("path", "/abs/results.json", folder) == "/abs/results.json"
    assert _ini_relative("path", "~/results.json", folder) == str(tmp_path / "home/results.json")
    specs = _ini_relative("specs", "global_magnitude, mine.py:fn\n~/p/theirs.py:other,pkg.mod:fn", folder)
    assert specs.split(",") == [
        "global_magnitude",
        f"{folder / 'mine.py'}:fn",
        f"{tmp_path / 'home/p/theirs.py'}:other",
        "pkg.mod:fn",  # a module is found on the import path, not in a folder
    ]
    # each keeps the name it is written with (a clash's cell name, a results file's pruner)
    assert [written(spec) for spec in specs.split(",")] == [
        "global_magnitude",
        "mine.py:fn",
        "~/p/theirs.py:other",
        "pkg.mod:fn",
    ]
    # a file without its function: joined too, so that the error lists that file's functions
    assert _ini_relative("specs", "sub/mine.py", folder) == str(folder / "sub/mine.py")
    assert written(str(folder / "sub/mine.py")) == "sub/mine.py"


def test_an_unknown_home_is_left_for_the_error_that_names_the_missing_file():
    folder = Path("/project")
    assert _ini_relative("path", "~nosuchuser_pp/out.json", folder) == "/project/~nosuchuser_pp/out.json"
    assert _ini_relative("specs", "~nosuchuser_pp/p.py:fn", folder) == "/project/~nosuchuser_pp/p.py:fn"


def test_a_spec_list_that_names_nothing_is_left_for_the_settings_to_refuse():
    import pytest

    from pytest_prune.settings import SettingsError, build

    for value in (",", [",", " "]):
        left = _ini_relative("specs", value, Path("/project"))
        assert left.strip()  # not "", which would read as unset and run the default pruners
        with pytest.raises(SettingsError, match="--prune-pruner: .* names nothing"):
            build({"pruner": left})
