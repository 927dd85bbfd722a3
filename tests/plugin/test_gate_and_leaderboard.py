"""--prune-baseline gates the session, --prune-leaderboard writes markdown, the CLI merges and compares."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from plugin.conftest import FAST

ARGS = ("--prune-bench", *FAST, "--prune-compression=2,8", "--prune-max-drop=100", "--prune-latency=off")


@pytest.fixture(scope="module")
def baseline_document(tmp_path_factory):
    """One run of random and global_magnitude at 2x and 8x, shared by the module's tests."""
    folder = tmp_path_factory.mktemp("baseline")
    args = (*ARGS, "--prune-pruner=random,global_magnitude", "--prune-json=base.json")
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    return (folder / "base.json").read_text()


@pytest.fixture
def baseline(pytester, baseline_document):
    """The shared baseline results JSON, copied into this test's folder (tests edit their copy)."""
    path = pytester.path / "base.json"
    path.write_text(baseline_document)
    return path


def edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_a_regression_fails_the_session_naming_the_cell(pytester, baseline, xdist):
    def raise_random_8x(document):
        cell = next(r for r in document["results"] if r["id"].endswith("random-8x"))
        cell["top1"] += 0.05

    edit(baseline, raise_random_8x)
    result = pytester.runpytest(*ARGS, "--prune-pruner=random,global_magnitude", "--prune-baseline=base.json", *xdist)
    result.assert_outcomes(passed=4)  # every test passed, yet the session fails on the gate
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*pytest-prune baseline gate: 1 regression(s) against base.json*",
            "*REGRESSED digits/lenet300_100/random/8x: top-1 * (−5.00 points, beyond tolerance 1 points)*",
        ]
    )
    loose = pytester.runpytest(
        *ARGS, "--prune-pruner=random,global_magnitude", "--prune-baseline=base.json", "--prune-tolerance=6"
    )
    assert loose.ret == 0
    loose.stdout.fnmatch_lines(["*pytest-prune baseline gate: no regression against base.json*"])


def test_a_missing_cell_and_a_changed_compression_regress(pytester, baseline):
    result = pytester.runpytest(*ARGS, "--prune-pruner=global_magnitude", "--prune-baseline=base.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*REGRESSED digits/lenet300_100/random/2x: missing*"])
    edit(baseline, lambda d: d["results"][0].update(compression_achieved=2.5))
    result = pytester.runpytest(*ARGS, "--prune-pruner=random,global_magnitude", "--prune-baseline=base.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*REGRESSED digits/lenet300_100/global_magnitude/2x: achieved compression changed*"])


def test_a_run_in_which_no_cell_ran_fails_the_gate(pytester, baseline):
    """A -k that matches no cell (or a CI command without --prune-bench) leaves every baseline cell missing."""
    pytester.makepyfile(test_other_unit="def test_unit():\n    pass\n")
    result = pytester.runpytest(*ARGS, "--prune-baseline=base.json", "-k", "unit")
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*baseline gate: no pytest-prune cell ran*", "*4 regression(s) against base.json*", "*REGRESSED *: missing*"]
    )
    nothing = pytester.runpytest(*ARGS, "--prune-baseline=base.json", "-k", "no_such_test")  # pytest's exit 5
    assert nothing.ret == 1
    collected = pytester.runpytest(*ARGS, "--prune-baseline=base.json", "--collect-only")  # nothing to run
    assert collected.ret == 0 and "no regression" not in collected.stdout.str()  # nor a verdict on nothing
    # a baseline the ini file sets holds for every run: one that benchmarks nothing is not gated
    pytester.makeini("[pytest]\nprune_baseline = base.json\n")
    unit = pytester.runpytest(*ARGS, "-k", "unit")
    assert unit.ret == 0
    unit.stdout.fnmatch_lines(["*baseline gate: no pytest-prune cell ran, nothing compared*"])


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda path: path.unlink(), "*--prune-baseline: *base.json: no such results file*"),
        (lambda path: path.write_text(path.read_text()[:200]), "*base.json: truncated or not JSON*"),
        (lambda path: edit(path, lambda d: d.update(schema="pytest-prune/0")), "*results schema 'pytest-prune/0'*"),
        (
            lambda path: edit(path, lambda d: d["environment"].update(epochs=3)),
            "*base.json and this run come from different matrices (epochs 3 vs 1)*",
        ),
    ],
    ids=["missing", "truncated", "schema", "other-matrix"],
)
def test_a_bad_baseline_is_a_usage_error_before_any_work(pytester, baseline, prepare, message):
    prepare(baseline)
    result = pytester.runpytest(*ARGS, "--prune-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_junit_xml_carries_the_key_metrics(pytester):
    pytester.runpytest(*ARGS, "--prune-pruner=random", "--junitxml=junit.xml").assert_outcomes(passed=2)
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    for case in cases:
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert 0 < float(properties["prune_top1"]) <= 1
        assert float(properties["prune_compression_achieved"]) >= 2
        assert properties["prune_cache"] == "computed"
        record = json.loads(properties["pytest_prune"])  # the whole record, as JSON
        assert record["pruner"] == "random" and record["top1"] == float(properties["prune_top1"])


def test_leaderboard_option_writes_markdown_and_plots(pytester):
    pytest.importorskip("matplotlib")
    result = pytester.runpytest(*ARGS, "--prune-pruner=random,global_magnitude", "--prune-leaderboard=out/LB.md")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*pytest-prune: leaderboard written to out/LB.md*"])
    text = (pytester.path / "out" / "LB.md").read_text()
    assert "## digits / lenet300_100" in text and "| 1      | `global_magnitude`" in text
    assert (pytester.path / "out" / "LB-digits-lenet300_100-compression.png").is_file()
    # the footer gives the exact command, so anyone can rerun what the board shows
    run_as = next(line for line in text.splitlines() if line.startswith("Run as: `pytest "))
    assert "--prune-bench --prune-dataset=digits" in run_as
    assert "--prune-pruner=random,global_magnitude --prune-leaderboard=out/LB.md" in run_as


def cli(pytester, *args):
    """Run the pytest-prune console script in a subprocess (in-process imports would outlive pytester's snapshot)."""
    return pytester.run(sys.executable, "-m", "pytest_prune.cli", *map(str, args))


def test_cli_merges_runs_into_one_leaderboard_and_compares(pytester, baseline):
    pytester.runpytest(*ARGS, "--prune-pruner=layer_magnitude", "--prune-json=more.json").assert_outcomes(passed=2)
    more, out = pytester.path / "more.json", pytester.path / "merged.md"
    assert cli(pytester, "leaderboard", baseline, more, "-o", out).ret == 0
    text = out.read_text()
    assert all(f"`{p}`" in text for p in ("random", "global_magnitude", "layer_magnitude"))
    assert "Merged from: base.json, more.json." in text
    assert "Run as:" not in text and "Regenerate: `pytest --prune-bench" in text  # two runs, two commands
    assert (
        "--prune-pruner=layer_magnitude --prune-json=more.json"
        in json.loads(more.read_text())["environment"]["command"]
    )
    same = cli(pytester, "compare", baseline, baseline)
    assert same.ret == 0 and "no regression against" in same.stdout.str()
    missing = cli(pytester, "compare", baseline, more)
    assert missing.ret == 1 and "4 regression(s)" in missing.stdout.str()  # all four baseline cells are missing
    absent = cli(pytester, "compare", baseline, pytester.path / "absent.json")
    assert absent.ret == 2 and "absent.json: no such results file" in absent.stderr.str()
    edit(more, lambda d: d["environment"].update(schedule="iterative:3"))
    for command in ("leaderboard", "expect"):  # -o on a results file it reads, or on a folder: refused before work
        clobber = cli(pytester, command, baseline, more, "-o", more)
        assert clobber.ret == 2 and f"-o {more} is also results file 2 {more}: one would" in clobber.stderr.str()
        assert json.loads(more.read_text())["results"]
        assert cli(pytester, command, baseline, "-o", pytester.path).ret == 2
    mixed = cli(pytester, "leaderboard", baseline, more, "-o", out)
    assert mixed.ret == 2
    assert "come from different matrices (schedule 'oneshot' vs 'iterative:3')" in mixed.stderr.str()


def test_n_without_xdist_names_the_extra_that_brings_it(tmp_path):
    """`pytest -n auto` (the documented way to spread the matrix) where pytest-xdist is not installed."""
    hide_xdist = (
        "import importlib.util, sys; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: None if name == 'xdist' else real(name, *a); "
        "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    )
    args = [sys.executable, "-c", hide_xdist, "-p", "no:xdist", "-p", "no:cacheprovider"]
    done = subprocess.run([*args, "-n", "auto", "--co"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "-n/--numprocesses needs pytest-xdist, which is not installed" in done.stderr
    assert "pytest-prune[xdist]" in done.stderr
    without = subprocess.run([*args, "--co", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert without.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, without.stderr
