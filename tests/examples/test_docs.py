"""The guides in docs/ and every command they and the README show, run as tests.

* Python examples (``<!-- doc-example: FILE -->`` before a code block) run for real, on the quick digits
  matrix, and what the guide claims about them is asserted.
* Every ``pytest --prune-…`` command line in a bash block is parsed and collected (``--co``) in a sandbox
  holding the examples, so a renamed option, a bad value or an unknown pruner name fails here. Commands
  that need what a sandbox cannot have (a committed baseline, a GPU) name the tests that exercise them.
* Every ``pytest-prune`` command line parses with the console script's own parser.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import torch  # noqa: F401  (imported before pytester snapshots sys.modules)
from plugin.conftest import FAST, records

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GUIDES = {"pruner-authors.md", "ci-maintainers.md", "scaling-out.md"}

# What a sandbox cannot provide, and the tests that run it instead.
COVERED_ELSEWHERE = {
    "--prune-baseline": ROOT / "tests/plugin/test_gate_and_leaderboard.py",
    "cuda:auto": ROOT / "tests/unit/test_settings.py",
}


def doc_examples() -> dict[str, str]:
    """Code blocks announced by ``<!-- doc-example: NAME -->`` in docs/, by file name."""
    pattern = re.compile(r"<!-- doc-example: (\S+) -->\s*```python\n(.*?)```", re.S)
    return {name: code for doc in DOCS[1:] for name, code in pattern.findall(doc.read_text())}


def readme_examples() -> dict[str, str]:
    pattern = re.compile(r"<!-- readme-example: (\S+) -->\s*```python\n(.*?)```", re.S)
    return dict(pattern.findall(DOCS[0].read_text()))


def command_lines() -> list[tuple[str, str]]:
    """(document, command) for every pytest / pytest-prune line of every bash block, continuations joined."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith(("pytest ", "pytest-prune ")):
                    found.append((doc.name, line.strip()))
    return found


def test_the_three_guides_exist_and_the_readme_links_them():
    assert {doc.name for doc in DOCS[1:]} >= GUIDES
    readme = DOCS[0].read_text()
    for guide in GUIDES:
        assert f"(docs/{guide})" in readme, f"README does not link docs/{guide}"


def test_torch_nn_utils_prune_pruners_match_the_built_ins_and_pass_conformance(pytester):
    code = doc_examples()["torch_prune_pruners.py"]
    pytester.path.joinpath("torch_prune_pruners.py").write_text(code)
    spec = "torch_prune_pruners.py:"
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner",
        f"{spec}torch_global_l1,{spec}torch_layer_l1,global_magnitude,layer_magnitude",
        "--prune-compression=4,16",
        "--prune-max-drop=100",
        "--prune-json=out.json",
        "--prune-no-cache",
    )
    result.assert_outcomes(passed=8)
    by = {(r["pruner"], r["compression"]): r for r in records(pytester.path / "out.json")}
    for mine, builtin in (("torch_global_l1", "global_magnitude"), ("torch_layer_l1", "layer_magnitude")):
        for compression in (4.0, 16.0):
            a, b = by[(mine, compression)], by[(builtin, compression)]
            # the same weights removed: the same compression, MACs and, after the same finetuning, top-1
            assert (a["compression_achieved"], a["macs"], a["top1"]) == (
                b["compression_achieved"],
                b["macs"],
                b["top1"],
            ), (mine, compression)
    conformance = pytester.runpytest("--prune-conformance", "--prune-pruner", f"{spec}torch_global_l1")
    conformance.assert_outcomes(passed=1)


def test_the_worked_example_pruner_runs_beside_the_baselines(pytester):
    pytester.path.joinpath("rms_pruner.py").write_text(doc_examples()["rms_pruner.py"])
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner=rms_pruner.py:rms_magnitude,global_magnitude",
        "--prune-compression=2,8",
        "--prune-json=out.json",
        "--prune-leaderboard=rms.md",
        "--prune-no-cache",
    )
    result.assert_outcomes(passed=4)
    rows = records(pytester.path / "out.json")
    assert all(abs(r["compression_achieved"] / r["compression"] - 1) < 0.01 for r in rows)
    assert "rms_magnitude" in (pytester.path / "rms.md").read_text()


def test_the_worked_example_table_holds_measured_numbers():
    """The guide's table is filled from a real run, not left as a placeholder."""
    text = (ROOT / "docs" / "pruner-authors.md").read_text()
    table = text.split("<!-- worked-example-results -->")[1].split("<!-- /worked-example-results -->")[0]
    assert "pending" not in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert {row.split("|")[1].strip() for row in rows} == {"rms_magnitude", "global_magnitude", "layer_magnitude"}


def test_the_junit_reader_reads_pytest_prune_properties(pytester):
    pytester.path.joinpath("junit_metrics.py").write_text(doc_examples()["junit_metrics.py"])
    pytester.runpytest(
        "--prune-bench", *FAST, "--prune-pruner=random", "--prune-compression=2", "--junitxml=junit.xml"
    ).assert_outcomes(passed=1)
    result = pytester.run(sys.executable, "junit_metrics.py", "junit.xml")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["test_prune[[]digits-lenet300_100-random-2x[]]: top-1 *%, sparsity 50.0%, cache *"])


def test_every_documented_command_parses_and_collects(pytester):
    """Each pytest / pytest-prune line of README.md and docs/ is checked in one subprocess."""
    for name, code in {**readme_examples(), **doc_examples()}.items():
        if not name.startswith("test_"):  # pruner modules the commands name; test files would add tests
            pytester.path.joinpath(name).write_text(code)
    pytester.path.joinpath("mypruners.py").write_text("def mine(model, amount, data):\n    return None\n")
    commands, skipped = [], []
    for doc, line in command_lines():
        argv = shlex.split(line, comments=True)
        if argv[0] == "pytest" and not any(arg.startswith("--prune") for arg in argv):
            continue  # the project's own suite and benchmarks (what CI runs)
        covered = [key for key in COVERED_ELSEWHERE if key in line]
        if covered:
            test_file = COVERED_ELSEWHERE[covered[0]]
            assert covered[0] in test_file.read_text(), f"{doc}: {line!r} is covered by no test"
            skipped.append(line)
            continue
        commands.append(argv)
    assert len(commands) >= 15 and skipped
    pytester.path.joinpath("commands.json").write_text(json.dumps(commands))
    pytester.path.joinpath("check_commands.py").write_text(
        """
import json, sys
import pytest
from pytest_prune.cli import build_parser

failed = []
for argv in json.load(open("commands.json")):
    if argv[0] == "pytest-prune":
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            failed.append(argv)
        continue
    code = pytest.main([*argv[1:], "--co", "-q", "-o", "cache_dir=.sandbox-cache"])
    if code not in (0, 5):
        failed.append(argv)
print("FAILED:", json.dumps(failed))
sys.exit(1 if failed else 0)
"""
    )
    result = pytester.run(sys.executable, "check_commands.py", timeout=600)
    failed = [line for line in result.stdout.lines if line.startswith("FAILED:")]
    assert result.ret == 0, failed or result.stdout.str()[-3000:] + result.stderr.str()[-3000:]
