"""The content-keyed cell cache end to end: warm re-runs, partial stages, corruption, kill -9, opt-outs."""

from __future__ import annotations

import json

from plugin.conftest import FAST, records

from pytest_prune.results import TIMED_FIELDS

BASE = (
    "--prune-bench",
    *FAST,
    "--prune-compression=2,4,8",
    "--prune-max-drop=100",
    "--prune-json=out.json",
    "--prune-latency-repeats=3",
)
DYING = """
import os, signal
from pytest_prune.pruners.magnitude import global_magnitude


def magnitude(model, amount, data):
    if os.environ.get("DIE_AT_8X") and amount > 0.8:  # the 8x cell: killed mid-matrix, no teardown, no summary
        os.kill(os.getpid(), signal.SIGKILL)
    return global_magnitude(model, amount, data)
"""


def cache_notes(pytester):
    return {r["id"]: r["cache"] for r in records(pytester.path / "out.json")}


def stable(pytester):
    rows = records(pytester.path / "out.json")
    return [{k: v for k, v in r.items() if k not in TIMED_FIELDS | {"cache", "tests"}} for r in rows]


def test_a_warm_rerun_serves_every_cell_and_reports_identical_records(pytester, xdist):
    pytester.runpytest(*BASE, "--prune-pruner=random,global_magnitude").assert_outcomes(passed=6)
    cold = records(pytester.path / "out.json")
    assert {r["cache"] for r in cold} == {"computed"} and all(len(r["cache_key"]) == 64 for r in cold)
    result = pytester.runpytest(*BASE, "--prune-pruner=random,global_magnitude", *xdist)
    result.assert_outcomes(passed=6)
    warm = records(pytester.path / "out.json")
    assert {r["cache"] for r in warm} == {"cached"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in {"cache", "tests"}} for r in rows]  # noqa: E731
    assert strip(warm) == strip(cold), "a cached record repeats every figure, timings included"
    result.stdout.fnmatch_lines(["*pytest-prune: 6 cell(s): 6 passed; 6 from the cache; * s in cells*"])


def test_new_stages_and_new_cells_compute_only_what_is_missing(pytester):
    pytester.runpytest(*BASE, "--prune-pruner=random", "--prune-latency=off").assert_outcomes(passed=3)
    pytester.runpytest(*BASE, "--prune-pruner=random,global_magnitude", "--prune-latency=1")
    notes = cache_notes(pytester)
    assert {notes[f"digits-lenet300_100-random-{c}x"] for c in (2, 4, 8)} == {"cached finetune; computed speed"}
    assert {notes[f"digits-lenet300_100-global_magnitude-{c}x"] for c in (2, 4, 8)} == {"computed"}


def test_no_cache_and_cache_clear_recompute(pytester):
    pytester.runpytest(*BASE, "--prune-pruner=random").assert_outcomes(passed=3)
    pytester.runpytest(*BASE, "--prune-pruner=random", "--prune-no-cache").assert_outcomes(passed=3)
    assert set(cache_notes(pytester).values()) == {"off"}
    pytester.runpytest(*BASE, "--prune-pruner=random", "--cache-clear").assert_outcomes(passed=3)
    assert set(cache_notes(pytester).values()) == {"computed"}
    pytester.runpytest(*BASE, "--prune-pruner=random", "-p", "no:cacheprovider").assert_outcomes(passed=3)
    assert set(cache_notes(pytester).values()) == {"off"}


def test_a_pruner_whose_state_cannot_be_keyed_is_never_cached_and_says_why(pytester):
    pytester.makepyfile(
        unkeyed="""
        import threading

        from pytest_prune.pruners.magnitude import global_magnitude


        class Locked:
            def __init__(self):
                self.lock = threading.Lock()  # state that does not pickle: the cache cannot key it

            def __call__(self, model, amount, data):
                return global_magnitude(model, amount, data)


        locked = Locked()
        """
    )
    for _ in range(2):
        pytester.runpytest(*BASE, "--prune-pruner=unkeyed.py:locked").assert_outcomes(passed=3)
        assert set(cache_notes(pytester).values()) == {
            "off: the source code (or state) of the pruner cannot be read, so changes would go unseen"
        }


def test_a_parent_trained_by_one_run_and_cached_for_the_next_is_trained_in_both_records(pytester):
    pytester.makepyfile(
        tiny="""
        import math

        from torch import nn


        def tiny(input_shape, classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, classes))
        """
    )
    args = ("--prune-bench", "--prune-dataset=digits", "--prune-arch=tiny.py:tiny", "--prune-epochs=1")
    args += ("-p", "no:randomly", "--prune-pruner=random", "--prune-compression=2", "--prune-max-drop=100")
    weights = []
    for extra in ((), ("--prune-no-cache",)):  # the second run's parent comes from the pretrained cache
        pytester.runpytest(*args, "--prune-json=out.json", *extra).assert_outcomes(passed=1)
        weights += [(r["weights"], r["weights_sha256"]) for r in records(pytester.path / "out.json")]
    assert weights[0] == weights[1] and weights[0][0] == "trained", weights


def test_a_changed_pruner_source_or_setting_invalidates_its_cells_only(pytester):
    pytester.makepyfile(mine=DYING)
    args = (*BASE, "--prune-pruner=random,mine.py:magnitude")
    pytester.runpytest(*args).assert_outcomes(passed=6)
    (pytester.path / "mine.py").write_text(DYING + "\n# a comment is a change of source\n")
    pytester.runpytest(*args)
    notes = cache_notes(pytester)
    assert {notes[f"digits-lenet300_100-random-{c}x"] for c in (2, 4, 8)} == {"cached"}
    assert {notes[f"digits-lenet300_100-magnitude-{c}x"] for c in (2, 4, 8)} == {"computed"}
    pytester.runpytest(*args, "--prune-epochs=2")
    assert set(cache_notes(pytester).values()) == {"computed"}


def test_a_corrupt_entry_is_detected_and_recomputed(pytester):
    pytester.runpytest(*BASE, "--prune-pruner=random").assert_outcomes(passed=3)
    before = stable(pytester)
    entries = sorted((pytester.path / ".pytest_cache").rglob("cells/*/*.json"))
    weights = sorted((pytester.path / ".pytest_cache").rglob("cells/*/*.pt"))
    assert len(entries) == len(weights) == 3
    entries[0].write_text(entries[0].read_text()[:100])  # truncated JSON
    weights[1].write_bytes(weights[1].read_bytes()[:-64])  # truncated weights
    result = pytester.runpytest(*BASE, "--prune-pruner=random")
    result.assert_outcomes(passed=3)
    notes = sorted(cache_notes(pytester).values())
    assert notes[0] == "cached" and all(n.startswith("recomputed: the cache entry was corrupt (") for n in notes[1:])
    assert {"is not valid JSON" in n or "not the one its entry recorded" in n for n in notes[1:]} == {True}
    assert stable(pytester) == before, "recomputing gives the same numbers"
    result.stdout.fnmatch_lines(["*3 passed; 1 from the cache, 2 recomputed over a corrupt cache entry*"])
    pytester.runpytest(*BASE, "--prune-pruner=random")
    assert set(cache_notes(pytester).values()) == {"cached"}, "the recomputed entries were stored again"


def test_a_killed_run_resumes_where_it_stopped(pytester, monkeypatch):
    pytester.makepyfile(mine=DYING)
    args = (*BASE, "--prune-pruner=mine.py:magnitude", "-p", "no:randomly")
    monkeypatch.setenv("DIE_AT_8X", "1")
    killed = pytester.runpytest(*args)
    assert killed.ret == -9, killed.stdout.str()
    done = records(pytester.path / "out.json")  # the JSON kept every cell finished before the kill
    assert [r["compression"] for r in done] == [2.0, 4.0]
    monkeypatch.delenv("DIE_AT_8X")
    pytester.runpytest(*args).assert_outcomes(passed=3)
    assert [r["cache"] for r in records(pytester.path / "out.json")] == ["cached", "cached", "computed"]


def test_user_fixtures_get_models_from_the_cache(pytester):
    pytester.makepyfile(
        """
        import torch

        def test_cell(finetuned_model, pruned_model, prune_result):
            pairs = zip(finetuned_model.parameters(), pruned_model.parameters())
            assert all(not ((pruned == 0) & (tuned != 0)).any() for tuned, pruned in pairs)
            assert sum(int((p == 0).sum()) for p in finetuned_model.parameters()) > 0
            assert prune_result.top1 > 0.5
        """
    )
    args = (*FAST, "--prune-pruner=global_magnitude", "--prune-compression=4", "--prune-json=out.json")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    cold = records(pytester.path / "out.json")[0]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    warm = records(pytester.path / "out.json")[0]
    assert warm["cache"] == "cached" and warm["top1"] == cold["top1"]


def test_concurrent_workers_write_every_record_and_entry(pytester):
    result = pytester.runpytest(*BASE, "--prune-pruner=random,global_magnitude,layer_magnitude", "-n", "2")
    result.assert_outcomes(passed=9)
    document = json.loads((pytester.path / "out.json").read_text())
    assert len(document["results"]) == 9 and len(document["summary"]) == 9
    assert len(list((pytester.path / ".pytest_cache").rglob("cells/*/*.json"))) == 9
    assert not list((pytester.path / ".pytest_cache").rglob("*.tmp"))


FACTORY = """
from pytest_prune.pruners.magnitude import global_magnitude


def make(share):
    def prune(model, amount, data):  # the value it prunes with lives in the file that calls make()
        return global_magnitude(model, amount * share, data)

    return prune


def logged(fn):  # a decorator without functools.wraps: the key must still see the wrapped pruner's file
    def wrapper(model, amount, data):
        return fn(model, amount, data)

    return wrapper
"""


def test_a_pruner_made_or_wrapped_in_another_file_is_keyed_by_the_file_that_registers_it(pytester):
    """``made = make(1.0)`` in made.py (a closure of factory.py) and ``@logged`` from factory.py: an edit of
    made.py changes the pruner, so its cells must run again, though the pruner's code lives in factory.py."""
    pytester.syspathinsert()
    pytester.makepyfile(made_factory=FACTORY)
    source = (
        "from made_factory import logged, make\n\nmade = make(1.0)\n\n\n"
        "@logged\ndef wrapped(model, amount, data):\n    return made(model, amount, data)\n"
    )
    pytester.makepyfile(made=source)
    args = (*FAST, "--prune-compression=2", "--prune-latency=off", "--prune-max-drop=100", "--prune-json=out.json")
    args = (*args, "--prune-bench", "--prune-pruner=made.py:made,made.py:wrapped")
    pytester.runpytest(*args).assert_outcomes(passed=2)
    pytester.runpytest(*args).assert_outcomes(passed=2)
    assert set(cache_notes(pytester).values()) == {"cached"}
    (pytester.path / "made.py").write_text(source.replace("make(1.0)", "make(0.999)"))
    pytester.runpytest(*args).assert_outcomes(passed=2)
    # registered under the functions' own names: the closure's and the wrapper's
    assert cache_notes(pytester) == {
        "digits-lenet300_100-prune-2x": "computed",
        "digits-lenet300_100-wrapper-2x": "computed",
    }


def test_a_spec_file_imports_its_sibling_modules_and_their_edits_invalidate_its_cells(pytester):
    """``pruners/sibling.py:prune`` imports ``sib_helper`` from its own folder, with no PYTHONPATH set."""
    pruners = pytester.mkdir("pruners")
    (pruners / "sib_helper.py").write_text("SHARE = 1.0\n")
    (pruners / "sibling.py").write_text(
        "from sib_helper import SHARE\nfrom pytest_prune.pruners.magnitude import global_magnitude\n\n\n"
        "def prune(model, amount, data):\n    return global_magnitude(model, amount * SHARE, data)\n"
    )
    args = (*FAST, "--prune-bench", "--prune-pruner=pruners/sibling.py:prune", "--prune-compression=2")
    args = (*args, "--prune-latency=off", "--prune-max-drop=100", "--prune-json=out.json")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    pytester.runpytest(*args).assert_outcomes(passed=1)
    assert cache_notes(pytester) == {"digits-lenet300_100-prune-2x": "cached"}
    (pruners / "sib_helper.py").write_text("SHARE = 0.999\n")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    assert cache_notes(pytester) == {"digits-lenet300_100-prune-2x": "computed"}
