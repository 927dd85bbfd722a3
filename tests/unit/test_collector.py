"""The controller's collector: a cell's record and its outcome as the reports of its test arrive."""

from __future__ import annotations

from types import SimpleNamespace

from pytest_prune.collector import Collector
from pytest_prune.results import PROPERTY
from pytest_prune.settings import Settings


def report(when, outcome="passed", nodeid="test_cells.py::test_cell[8x]"):
    record = {"id": "d-a-random-8x-seed0", "dataset": "d", "arch": "a", "pruner": "random", "compression": 8.0}
    return SimpleNamespace(
        user_properties=[(PROPERTY, {**record, "seed": 0, "top1": 0.9})],
        nodeid=nodeid,
        when=when,
        passed=outcome == "passed",
        failed=outcome == "failed",
        skipped=outcome == "skipped",
        duration=0.1,
        longrepr=None,
        longreprtext="",
    )


def collector():
    return Collector(Settings(), command="pytest")


def test_a_cell_interrupted_after_its_setup_is_an_error_not_passed():
    seen = collector()
    seen.pytest_runtest_logreport(report("setup"))  # Ctrl-C in the call: no call report ever comes
    (record,) = seen.sorted_records()
    assert (record["outcome"], record["error"]) == ("error", "interrupted: its test did not finish")
    assert seen.counts().startswith("1 cell(s): 1 error")


def test_a_cell_is_judged_by_its_call_once_it_reports():
    seen = collector()
    for when in ("setup", "call", "teardown"):
        seen.pytest_runtest_logreport(report(when))
    assert [r["outcome"] for r in seen.sorted_records()] == ["passed"]
    failed = collector()
    failed.pytest_runtest_logreport(report("setup"))
    failed.pytest_runtest_logreport(report("call", "failed"))
    assert [r["outcome"] for r in failed.sorted_records()] == ["failed"]
    skipped = collector()
    skipped.pytest_runtest_logreport(report("setup", "skipped"))  # a skip in setup has no call
    assert [r["outcome"] for r in skipped.sorted_records()] == ["skipped"]


def test_a_json_that_cannot_be_rewritten_keeps_the_records_and_says_so(tmp_path):
    from pathlib import Path

    blocked = tmp_path / "a file"
    blocked.write_text("")
    seen = Collector(Settings(json_path=blocked / "r.json"), command="pytest")  # its folder is a file
    for nodeid in ("t.py::test_cell[8x]", "t.py::test_cell[8x]"):
        for when in ("setup", "call", "teardown"):
            seen.pytest_runtest_logreport(report(when, nodeid=nodeid))  # no OSError escapes the hook
    assert [r["outcome"] for r in seen.sorted_records()] == ["passed"]
    assert len([m for m in seen.messages if "results JSON not rewritten after a cell" in m]) == 1
    session = SimpleNamespace(exitstatus=0, config=None)
    seen.pytest_sessionfinish(session)
    assert session.exitstatus == 1 and any(m.startswith("results JSON NOT written to") for m in seen.messages)
    seen.settings = Settings(json_path=Path(tmp_path / "r.json"))  # room again: every record is written
    seen.pytest_sessionfinish(SimpleNamespace(exitstatus=0, config=None))
    assert '"top1": 0.9' in (tmp_path / "r.json").read_text()


def test_a_test_id_names_its_case_by_the_longest_matching_case_id():
    from pytest_prune.collector import case_of
    from pytest_prune.matrix import Case

    cases = [Case("d", "a", "p", 2.0, 0), Case("d", "a", "p-2x", 2.0, 0), Case("d", "a", "p", 8.0, 0)]
    assert case_of("t.py::test_prune[d-a-p-2x]", cases) == cases[0]
    assert case_of("t.py::test_prune[d-a-p-2x-2x]", cases) == cases[1]  # not p at 2x inside it
    assert case_of("t.py::test_mine[d-a-p-8x-large]", cases) == cases[2]  # the test's own parameter beside it
    assert case_of("t.py::test_mine[small-d-a-p-8x]", cases) == cases[2]
    assert case_of("t.py::test_other[d-a-p-4x]", cases) is None
    assert case_of("t.py::test_other", cases) is None
    assert case_of("dir[x]/t.py::test_prune[d-a-p-8x]", cases) == cases[2]  # a folder's brackets are no ids
    assert case_of("dir[d-a-p-8x]/t.py::test_plain", cases) is None
    accented = Case("d", "a", "élague", 2.0, 0)
    assert case_of("t.py::test_prune[d-a-\\xe9lague-2x]", [accented]) == accented  # as pytest escapes it


def crash_report(nodeid):
    return SimpleNamespace(
        user_properties=[],
        nodeid=nodeid,
        when="???",  # as pytest-xdist reports a worker that died
        passed=False,
        failed=True,
        skipped=False,
        duration=0.0,
        longrepr=f"worker 'gw0' crashed while running {nodeid!r}",
        longreprtext=f"worker 'gw0' crashed while running {nodeid!r}",
    )


def test_a_crashed_worker_leaves_an_error_record_of_its_cell(tmp_path):
    import json

    from pytest_prune.matrix import Case

    settings = Settings(json_path=tmp_path / "r.json")
    seen = Collector(settings, command="pytest", cases=lambda: [Case("d", "a", "random", 8.0, 0)])
    for nodeid in ("t.py::test_prune[d-a-random-8x]", "t.py::test_plain"):
        crash = crash_report(nodeid)
        seen.pytest_handlecrashitem(crashitem=nodeid, report=crash, sched=None)
        seen.pytest_runtest_logreport(crash)
    (record,) = seen.sorted_records()  # the plain test is no cell: no record, no message
    assert (record["id"], record["pruner"], record["compression"], record["outcome"]) == (
        "d-a-random-8x",
        "random",
        8.0,
        "error",
    )
    assert "crashed while running" in record["error"] and not seen.messages
    (written,) = json.loads((tmp_path / "r.json").read_text())["results"]  # at once: the run may die next
    assert written["outcome"] == "error"


def test_a_crash_whose_cell_cannot_be_found_is_said():
    def broken():
        raise RuntimeError("cannot import the user's pruner here")

    seen = Collector(Settings(), command="pytest", cases=broken)
    seen.pytest_handlecrashitem(crashitem="t.py::test_prune[x]", report=crash_report("t.py::test_prune[x]"), sched=None)
    assert seen.messages == [
        "a worker crashed while running t.py::test_prune[x]; a pytest-prune cell there is missing from the results "
        "(RuntimeError: cannot import the user's pruner here)"
    ]


def test_cells_that_sampled_fewer_eps_images_than_asked_are_named_once_per_dataset(tmp_path):
    seen = Collector(Settings(robustness=True, eps_images=250, json_path=tmp_path / "r.json"), command="pytest")
    for nodeid, images in (("t.py::test_cell[2x]", 30), ("t.py::test_cell[8x]", 30)):
        for when in ("setup", "call", "teardown"):
            sent = report(when, nodeid=nodeid)
            sent.user_properties[0][1].update(id=nodeid, eps_images=images)
            seen.pytest_runtest_logreport(sent)
    seen.pytest_sessionfinish(SimpleNamespace(exitstatus=0, config=None))
    assert [m for m in seen.messages if "eps" in m] == [
        "eps-agreement on d sampled all 30 test images (--prune-eps-images asks 250)"
    ]


def test_cells_whose_tests_skip_prune_result_are_named_when_robustness_is_on(tmp_path):
    """Robustness is measured in the prune_result fixture: a user's test asking only for finetuned_model finishes
    without it, which --prune-robustness must not pass over in silence."""
    seen = Collector(Settings(robustness=True, json_path=tmp_path / "r.json"), command="pytest")
    for nodeid, measured in (("t.py::test_own[2x]", False), ("t.py::test_own[8x]", True)):
        for when in ("setup", "call", "teardown"):
            sent = report(when, nodeid=nodeid)
            sent.user_properties[0][1].update(id=nodeid, agreement=0.99 if measured else None)
            seen.pytest_runtest_logreport(sent)
    seen.pytest_sessionfinish(SimpleNamespace(exitstatus=0, config=None))
    assert [m for m in seen.messages if "robustness" in m] == [
        "--prune-robustness measured nothing in 1 cell(s) whose tests do not request prune_result (it runs the speed "
        "and robustness measurements): t.py::test_own[2x]"
    ]
    quiet = Collector(Settings(json_path=tmp_path / "q.json"), command="pytest")  # robustness off: nothing to say
    for when in ("setup", "call", "teardown"):
        quiet.pytest_runtest_logreport(report(when))
    quiet.pytest_sessionfinish(SimpleNamespace(exitstatus=0, config=None))
    assert not [m for m in quiet.messages if "robustness" in m]


def test_a_run_that_stopped_early_says_its_json_and_leaderboard_are_partial(tmp_path):
    import json

    matrix = [SimpleNamespace(id="d-a-random-8x-seed0"), SimpleNamespace(id="d-a-random-32x-seed0")]
    for session, reason in (
        (SimpleNamespace(exitstatus=2, config=None), "interrupted"),  # Ctrl-C
        (SimpleNamespace(exitstatus=1, config=None, shouldfail="stopping after 1 failures"), "stopping after 1"),
    ):
        settings = Settings(json_path=tmp_path / "r.json", leaderboard=tmp_path / "LB.md")
        seen = Collector(settings, command="pytest", cases=lambda: matrix)  # 32x never ran
        for when in ("setup", "call", "teardown"):
            seen.pytest_runtest_logreport(report(when))
        seen.pytest_sessionfinish(session)
        stated = json.loads((tmp_path / "r.json").read_text())["environment"]["interrupted"]
        assert stated.startswith(reason) and stated.endswith("; 1 cell(s) of the matrix did not finish")
        assert f"**Partial**: the run stopped early ({reason}" in (tmp_path / "LB.md").read_text()
        assert any(m.startswith(f"the run stopped early ({reason}") for m in seen.messages)
    # -x tripping on the last cell (or on a test of another kind): every cell finished, nothing is partial
    finished = Collector(Settings(json_path=tmp_path / "f.json"), command="pytest", cases=lambda: matrix[:1])
    for when in ("setup", "call", "teardown"):
        finished.pytest_runtest_logreport(report(when))
    finished.pytest_sessionfinish(SimpleNamespace(exitstatus=1, config=None, shouldfail="stopping after 1 failures"))
    assert "interrupted" not in json.loads((tmp_path / "f.json").read_text())["environment"]


def test_a_run_in_which_no_cell_ran_says_the_json_it_left_is_an_earlier_runs(tmp_path):
    earlier = tmp_path / "r.json"
    earlier.write_text("{}")
    seen = Collector(Settings(json_path=earlier), command="pytest")
    seen.pytest_sessionfinish(SimpleNamespace(exitstatus=5, config=None))  # -k that matched no cell
    assert seen.messages == [
        f"results JSON {earlier} not rewritten: no pytest-prune cell ran, so it still holds an earlier run's results"
    ]
    assert earlier.read_text() == "{}"  # never deleted: it is the user's
    other = Collector(Settings(json_path=earlier), command="pytest")  # prune_json in the ini, `pytest tests/unit`
    other.pytest_sessionfinish(SimpleNamespace(exitstatus=0, config=None))
    assert other.messages == []
