"""--prune-bench: the built-in suite, ids, selection, tables, JSON, thresholds, usage errors."""

from __future__ import annotations

import json
import re

import pytest
import torch  # imported here, not in a test: pytester drops modules first imported inside a test
from plugin.conftest import FAST, records

from pytest_prune.results import TIMED_FIELDS

REQUIRED = {
    "dataset",
    "arch",
    "pruner",
    "compression",
    "seed",
    "outcome",
    "error",
    "amount",
    "top1",
    "top5",
    "dense_top1",
    "params",
    "nonzero_params",
    "compression_achieved",
    "sparsity",
    "dense_macs",
    "macs",
    "theoretical_speedup",
}


def test_one_test_per_cell_with_table_and_json(pytester, xdist):
    result = pytester.runpytest(
        "--prune-bench",
        *FAST,
        "--prune-compression=2,4",
        "--prune-json=out.json",
        "--prune-max-drop=100",
        "-v",
        *xdist,
    )
    result.assert_outcomes(passed=6)
    assert "test_prune[digits-lenet300_100-global_magnitude-4x]" in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*pytest-prune: digits / lenet300_100 (dense top-1 *, 50,610 params, 0.050M MACs)*",
            "*random*2x*2.00x*50.00*passed*",
        ]
    )
    rows = records(pytester.path / "out.json")
    assert [r["id"] for r in rows][:2] == [
        "digits-lenet300_100-global_magnitude-2x",
        "digits-lenet300_100-global_magnitude-4x",
    ]
    for row in rows:
        assert set(row) >= REQUIRED and row["outcome"] == "passed" and row["error"] is None
        assert abs(row["compression_achieved"] / row["compression"] - 1) < 0.01
        assert 0 < row["top1"] <= 1 and row["macs"] < row["dense_macs"]


def test_serial_and_xdist_records_and_leaderboards_are_identical(pytester):
    # --prune-no-cache: both runs compute every cell (a warm cache would make the second run a copy)
    args = ("--prune-bench", *FAST, "--prune-compression=2,8", "--prune-max-drop=100", "--prune-no-cache")
    pytester.runpytest(*args, "--prune-json=serial.json", "--prune-leaderboard=serial/LB.md").assert_outcomes(passed=6)
    pytester.runpytest(*args, "--prune-json=xdist.json", "--prune-leaderboard=xdist/LB.md", "-n", "2").assert_outcomes(
        passed=6
    )

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMED_FIELDS} for r in rows]

    serial, parallel = records(pytester.path / "serial.json"), records(pytester.path / "xdist.json")
    assert {r["cache"] for r in serial + parallel} == {"off"}
    assert strip(serial) == strip(parallel)

    def board(name):  # measured latency speedups are measurements of the moment: mask them
        text = re.sub(r" / [0-9.]+x @\d+", " / (measured)", (pytester.path / name / "LB.md").read_text())
        return re.sub(r"Run as: `.*`\.", "Run as: (the command)", text)  # which differs by its -n 2 and paths

    assert board("serial") == board("xdist")
    assert "-n 2" in (pytester.path / "xdist" / "LB.md").read_text()
    assert "| 1      | `global_magnitude`" in board("serial") or "| 1      | `layer_magnitude`" in board("serial")


def test_k_and_m_select_cells(pytester):
    base = ("--prune-bench", *FAST, "--prune-compression=2,4", "--prune-max-drop=100")
    pytester.runpytest(*base, "-k", "random and 4x").assert_outcomes(passed=1)
    pytester.runpytest(*base, "-m", "prune(pruner='layer_magnitude')").assert_outcomes(passed=2)


def test_ini_twins_configure_the_matrix(pytester):
    pytester.makeini(
        """
        [pytest]
        prune_bench = true
        prune_dataset = digits
        prune_arch = lenet300_100
        prune_pruner = global_magnitude
        prune_compression = 2, 3
        prune_epochs = 0
        prune_json = ini.json
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    assert [r["compression"] for r in records(pytester.path / "ini.json")] == [2.0, 3.0]


def test_ini_paths_are_relative_to_the_ini_file(pytester, monkeypatch):
    """As pytest's own path ini options: a run from a subfolder reads and writes the same files."""
    pytester.makeini(
        """
        [pytest]
        prune_bench = true
        prune_dataset = digits
        prune_arch = lenet300_100
        prune_pruner = pruners/mine.py:zero_smallest
        prune_compression = 2
        prune_epochs = 0
        prune_json = out/ini.json
        """
    )
    (pytester.path / "pruners").mkdir()
    (pytester.path / "pruners" / "mine.py").write_text(
        "import torch\n"
        "from pytest_prune import prunable\n\n"
        "def zero_smallest(model, amount, data):\n"
        "    for module, name in prunable(model):\n"
        "        weight = getattr(module, name)\n"
        "        with torch.no_grad():\n"
        "            weight.view(-1)[weight.abs().flatten().argsort()[: round(amount * weight.numel())]] = 0\n"
    )
    (pytester.path / "out").mkdir()
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    assert [r["pruner"] for r in records(pytester.path / "out" / "ini.json")] == ["zero_smallest"]
    assert not (pytester.path / "elsewhere" / "out").exists()


def test_ini_specs_keep_the_names_they_are_written_with_from_any_folder(pytester, monkeypatch):
    """Two files' ``prune`` functions go by their SPECs, as the ini file writes them: they named the files by
    absolute path (cells, results and leaderboards differed from one checkout to another), and a SPEC that
    names a file without a function listed the functions of a file relative to the current folder."""
    body = (
        "from pytest_prune.pruners.magnitude import global_magnitude\n\n"
        "def prune(model, amount, data):\n"
        "    return global_magnitude(model, amount, data)\n"
    )
    for version in ("v1", "v2"):
        pytester.mkdir(version).joinpath("mine.py").write_text(body)
    options = "[pytest]\nprune_bench = true\nprune_dataset = digits\nprune_arch = lenet300_100\n"
    options += "prune_compression = 2\nprune_epochs = 0\nprune_json = out.json\n"
    pytester.makeini(options + "prune_pruner = v1/mine.py:prune, v2/mine.py:prune\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    assert sorted(r["pruner"] for r in records(pytester.path / "out.json")) == ["v1/mine.py:prune", "v2/mine.py:prune"]
    pytester.makeini(options + "prune_pruner = v1/mine.py\n")
    result = pytester.runpytest("-p", "no:randomly")
    result.stderr.fnmatch_lines(
        ["*pruner SPEC 'v1/mine.py' names a file, not a function: give v1/mine.py:FUNCTION (functions in it: prune)*"]
    )


def test_toml_lists_configure_the_list_options(pytester, monkeypatch):
    """pyproject.toml lists, a relative path SPEC among them, reach the matrix as the items they list."""
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        prune_bench = true
        prune_dataset = ["digits"]
        prune_arch = ["lenet300_100"]
        prune_pruner = ["pruners/mine.py:nothing", "global_magnitude"]
        prune_compression = [2, 3]
        prune_epochs = 0
        prune_max_drop = 100
        """
    )
    (pytester.path / "pruners").mkdir()
    (pytester.path / "pruners" / "mine.py").write_text(
        "from pytest_prune.pruners.magnitude import global_magnitude\n\n"
        "def nothing(model, amount, data):\n"
        "    return global_magnitude(model, amount, data)\n"
    )
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    # pytest 9 deprecates lists for "string" ini options: the warning must not come
    strict = ("-W", "error::pytest.PytestRemovedIn10Warning") if hasattr(pytest, "PytestRemovedIn10Warning") else ()
    result = pytester.runpytest("-p", "no:randomly", *strict, "-v")
    result.assert_outcomes(passed=4)
    for cell in ("nothing-2x", "nothing-3x", "global_magnitude-2x", "global_magnitude-3x"):
        result.stdout.fnmatch_lines([f"*test_prune[[]digits-lenet300_100-{cell}[]] PASSED*"])


@pytest.mark.skipif(pytest.version_tuple[:2] < (9, 2), reason="typed ini options need pytest 9.2")
def test_pytest_9_native_toml_takes_numbers_and_a_zero(pytester):
    pytester.makepyprojecttoml(
        """
        [tool.pytest]
        prune_bench = true
        prune_dataset = ["digits"]
        prune_arch = ["lenet300_100"]
        prune_pruner = ["global_magnitude"]
        prune_compression = ["2"]
        prune_epochs = 0
        prune_max_drop = 100
        prune_json = "out.json"
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["environment"]["epochs"] == 0  # a TOML 0 is a value, not "unset"


def test_a_1x_cell_is_the_finetuned_dense_control(pytester):
    result = pytester.runpytest(
        *FAST, "--prune-bench", "--prune-pruner=global_magnitude", "--prune-compression=1", "--prune-json=out.json"
    )
    result.assert_outcomes(passed=1)
    [row] = records(pytester.path / "out.json")
    assert row["compression_achieved"] == 1.0 and row["pruned_top1"] == row["dense_top1"]  # nothing removed
    assert row["epochs"] == 1 and row["seconds"]["finetune"] > 0 and row["finetune"]["epochs"] == 1


def test_a_threshold_failure_says_measured_and_required(pytester, xdist):
    result = pytester.runpytest(
        "--prune-bench",
        *FAST,
        "--prune-pruner=random",
        "--prune-compression=8",
        "--prune-min-top1=99.9",
        "--prune-json=out.json",
        *xdist,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*digits-lenet300_100-random-8x: top-1 *% is below --prune-min-top1 99.9%*"])
    (row,) = records(pytester.path / "out.json")
    assert row["outcome"] == "failed" and "below --prune-min-top1 99.9%" in row["error"]
    assert row["required_top1"] == pytest.approx(0.999) and row["threshold"] == "min_top1"


def test_unknown_names_are_usage_errors_listing_the_choices(pytester, xdist):
    result = pytester.runpytest("--prune-bench", "--prune-pruner=globl_magnitude", *xdist)
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        [
            "*unknown pruner 'globl_magnitude'. Did you mean global_magnitude*? Available pruners: *random*",
        ]
    )
    result = pytester.runpytest("--prune-bench", "--prune-arch=lenet7", *xdist)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*unknown architecture 'lenet7'*Available architectures: lenet300_100, lenet5*"])
    result = pytester.runpytest("--prune-bench", "--prune-dataset=cifar11", *xdist)
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        ["*unknown dataset 'cifar11'. Did you mean cifar10*Available datasets: cifar10, cifar100, digits, *mnist5k*"]
    )


def test_the_xdist_controller_never_imports_torch_for_built_in_names(pytester):
    """The controller never collects: with plain built-in names it validates them without loading torch."""
    pytester.makeconftest(
        """
        import sys
        from pathlib import Path

        def pytest_unconfigure(config):
            if not hasattr(config, "workerinput"):
                Path("controller.txt").write_text(str("torch" in sys.modules))
        """
    )
    args = ("--prune-bench", "--prune-pruner=random,l1_filter", "--prune-compression=2", "--prune-no-cache")
    result = pytester.runpytest(*args, *FAST, "-n", "2")
    result.assert_outcomes(passed=2)
    assert "Benchmark fixture was not used" not in result.stdout.str()  # pytest-benchmark is off under xdist
    assert (pytester.path / "controller.txt").read_text() == "False"


def test_an_unusable_device_is_a_usage_error(pytester, xdist):
    result = pytester.runpytest("--prune-bench", "--prune-device=tpu9", *xdist)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--prune-device: 'tpu9' is not a torch device*"])
    if not torch.cuda.is_available():
        result = pytester.runpytest("--prune-bench", "--prune-device=cuda", *xdist)
        assert result.ret == 4
        result.stderr.fnmatch_lines(["*--prune-device cuda: torch.cuda.is_available() is False*"])


def test_bad_compressions_are_usage_errors(pytester, xdist):
    for value, message in (("0.5", "*'0.5' is below 1*"), ("two", "*'two' is not a number*")):
        result = pytester.runpytest("--prune-bench", f"--prune-compression={value}", *xdist)
        assert result.ret == 4
        result.stderr.fnmatch_lines([message])


def test_unreachable_compression_errors_only_its_cells(pytester):
    result = pytester.runpytest(
        "--prune-bench",
        *FAST,
        "--prune-pruner=global_magnitude",
        "--prune-compression=2,500",
        "--prune-json=out.json",
        "--prune-max-drop=100",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*compression 500x is not reachable*"])
    assert [r["outcome"] for r in records(pytester.path / "out.json")] == ["passed", "error"]


def test_without_prune_options_the_plugin_stays_out_of_the_way(pytester, xdist):
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest(*xdist)
    result.assert_outcomes(passed=1)
    assert "pytest-prune" not in result.stdout.str()


def test_an_ini_pruner_list_configures_but_runs_no_benchmark_of_its_own(pytester):
    """`prune_pruner` in the ini file chooses the benchmark's pruners; `pytest tests/unit` still runs only the
    unit tests. On the command line --prune-pruner implies --prune-bench."""
    pytester.makeini(
        """
        [pytest]
        prune_dataset = digits
        prune_arch = lenet300_100
        prune_pruner = global_magnitude
        prune_compression = 2
        prune_epochs = 0
        """
    )
    pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")
    pytester.runpytest("-p", "no:randomly", "test_unit.py").assert_outcomes(passed=1)
    result = pytester.runpytest("-p", "no:randomly", "--prune-pruner=random", "--co", "-q")
    result.stdout.fnmatch_lines(["*test_prune[[]digits-lenet300_100-random-2x[]]*"])


def test_matrix_options_with_nothing_to_run_them_say_what_would(pytester):
    line = "pytest-prune: --prune-dataset, --prune-compression chose a matrix, but no cell ran: add --prune-bench*"
    result = pytester.runpytest("--prune-dataset=digits", "--prune-compression=4")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([line])
    pytester.makepyfile(test_unit="def test_ok():\n    assert True\n")  # other tests ran: still said
    result = pytester.runpytest("--prune-dataset=digits", "--prune-compression=4")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([line])
    quiet = pytester.runpytest("--prune-bench", "--prune-dataset=digits", "--prune-compression=4", "-k", "nomatch")
    assert "no cell ran" not in quiet.stdout.str()  # the benchmark was asked for; -k chose none of it
