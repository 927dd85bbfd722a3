"""README snippets run as tests: the pruner and test file it shows, and the commands CI runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> dict[str, str]:
    """Code blocks announced by `<!-- readme-example: NAME -->`, by file name."""
    pattern = re.compile(r"<!-- readme-example: (\S+) -->\s*```python\n(.*?)```", re.S)
    return dict(pattern.findall(README.read_text()))


def test_the_readme_pruner_and_test_file_run(pytester):
    files = examples()
    assert set(files) == {"my_pruners.py", "test_my_pruner.py"}
    for name, code in files.items():
        pytester.path.joinpath(name).write_text(code)
    result = pytester.runpytest(
        "--prune-pruner",
        "my_pruners.py:my_pruner",
        "--prune-pruner",
        "*magnitude",
        "--prune-dataset=digits",
        "--prune-arch=lenet300_100",
        "--prune-compression=2,4",
        "--prune-epochs=1",
        "--prune-json=out.json",
    )
    result.assert_outcomes(passed=12)  # 2 tests × 3 pruners × 2 compressions
    rows = json.loads((pytester.path / "out.json").read_text())["results"]
    assert "digits-lenet300_100-my_pruner-4x" in {r["id"] for r in rows}
    assert all(abs(r["compression_achieved"] / r["compression"] - 1) < 0.01 for r in rows)


def test_ci_runs_the_readme_install_and_test_commands():
    readme = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    install = re.search(r"# 1\. install.*\n(.*)\n", readme).group(1)
    assert install in ci and "pip install -c constraints-cpu.txt" in install
    test = re.search(r"# 2\. run pytest-prune's own test suite.*\n(pytest.*)\n", readme).group(1)
    assert test == "pytest -n auto"
    assert re.search(rf"^\s*{re.escape(test)}$", ci, re.M)


def test_every_option_the_readme_mentions_exists():
    from pytest_prune.options import OPTIONS

    known = {option.flag for option in OPTIONS}
    mentioned = set(re.findall(r"--prune-[a-z0-9-]+[a-z0-9]", README.read_text()))
    assert mentioned and mentioned <= known, f"README mentions unknown options: {sorted(mentioned - known)}"
    undocumented = {flag for flag in known if f"`{flag}" not in README.read_text()}
    assert not undocumented, f"options missing from the README's table: {sorted(undocumented)}"


def test_the_changelog_names_the_package_version():
    import pytest_prune

    changelog = (README.parent / "CHANGELOG.md").read_text()
    first = re.search(r"^## (\S+)", changelog, re.M).group(1)
    assert first == pytest_prune.__version__, "add a CHANGELOG section for the version in pytest_prune/__init__.py"


def test_leaderboard_md_is_what_the_harness_writes_from_its_results_json(tmp_path):
    """LEADERBOARD.md is regenerated from benchmarks/leaderboard.json byte for byte, plots included."""
    from pytest_prune.report.leaderboard import write_leaderboard
    from pytest_prune.results_file import load_results

    document = load_results(README.parent / "benchmarks" / "leaderboard.json")
    write_leaderboard(tmp_path / "LEADERBOARD.md", document["results"], document["environment"], ["leaderboard.json"])
    committed = (README.parent / "LEADERBOARD.md").read_text()
    assert (tmp_path / "LEADERBOARD.md").read_text() == committed
    for link in re.findall(r"\]\(([^)]+\.png)\)", committed):
        assert (README.parent / link).is_file(), f"LEADERBOARD.md links a missing plot: {link}"
    pruners = {r["pruner"] for r in document["results"]}
    assert len(pruners) == 10 and {r["seed"] for r in document["results"]} == {0, 1, 2}
    assert all(r.get("corruption_top1") for r in document["results"] if r["outcome"] == "passed")


def test_the_readme_opens_with_the_leaderboards_headline():
    readme = README.read_text()
    headline = readme.split("<!-- leaderboard-headline -->")[1].split("<!-- /leaderboard-headline -->")[0]
    rows = [line for line in headline.splitlines() if line.startswith("|")]
    assert len(rows) >= 12, "the headline table is missing"
    leaderboard = (README.parent / "LEADERBOARD.md").read_text()
    for row in rows:
        assert row in leaderboard, f"README headline row not in LEADERBOARD.md: {row}"
    assert readme.index("<!-- leaderboard-headline -->") < readme.index("## Quick start")


def test_the_shipped_expectations_are_what_pytest_prune_expect_writes_from_the_leaderboard_results(tmp_path):
    """reference_models/expectations.json comes from benchmarks/leaderboard.json (3 seeds, 10 pruners)."""
    from pytest_prune.thresholds import expectations_from_results

    written = expectations_from_results([README.parent / "benchmarks" / "leaderboard.json"], tmp_path / "e.json", 1.5)
    assert written == 100
    assert (tmp_path / "e.json").read_text() == (README.parent / "reference_models" / "expectations.json").read_text()
