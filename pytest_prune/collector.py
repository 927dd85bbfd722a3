"""The controller-side plugin that merges the records of every report, writes the JSON and prints the tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from .results import OUTCOME_RANK, PROPERTY, environment, write_json


def case_of(nodeid: str, cases: Sequence[Any]) -> Any | None:
    """The matrix case a test id runs, read off its parameter ids (``test_prune[mnist5k-lenet5-random-8x]``, or
    with a test's own parameters around the case's id), or None. The longest matching id wins, so a case whose
    id extends another's (a pruner named ``p-2x`` beside ``p``) is told apart; a name pytest escaped in the id
    (``élague`` as ``\\xe9lague``) matches too."""
    params = parameter_ids(nodeid)
    if params is None:
        return None
    params = f"-{params}-"
    found = [
        case
        for case in cases
        if f"-{case.id}-" in params or f"-{case.id.encode('unicode_escape').decode('ascii')}-" in params
    ]
    return max(found, key=lambda case: len(case.id), default=None)


def parameter_ids(nodeid: str) -> str | None:
    """What ``[...]`` holds at the end of a test id (its parametrization), or None (a folder may hold ``[``)."""
    name = nodeid.rpartition("::")[2]
    return name[name.index("[") + 1 : -1] if name.endswith("]") and "[" in name else None


def _crash_message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return str(message).removeprefix("Failed: ")
    text = str(report.longreprtext or "").strip()
    return text.splitlines()[-1] if text else ""


def _stopped_early(session: Any) -> str | None:
    """Why the session ended before its every test ran (Ctrl-C, ``-x``, ``--maxfail``), or None."""
    reason = getattr(session, "shouldfail", False) or getattr(session, "shouldstop", False)
    if reason:  # -x and --maxfail say why (under xdist they end the session as an interrupt too)
        return str(reason)
    return "interrupted" if session.exitstatus == 2 else None  # pytest.ExitCode.INTERRUPTED


INTERRUPTED = "interrupted: its test did not finish"
"""The error of a cell whose test was set up but never reported its call."""


class Collector:
    """Controller-side plugin: merges the records of all reports, writes JSON, prints the tables."""

    def __init__(
        self,
        settings: Any,
        baseline: dict[str, Any] | None = None,
        command: str | None = None,
        cases: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.cases = cases  # the matrix, built on demand: the xdist controller needs it only when a worker dies
        self.records: dict[str, dict[str, Any]] = {}
        self.durations: dict[str, float] = {}
        self.environment = environment(settings, command)
        self.baseline = baseline
        self.findings: list[Any] | None = None  # the gate's, once it compared
        self.messages: list[str] = []
        self.unwritten = False  # a rewrite of the JSON after a cell failed (retried at the end)
        self.unfinished: dict[str, set[str]] = {}  # record id → its tests set up but not yet called

    @pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        """A worker died inside a test (xdist): give the crash report its cell's record, so the cell is an error
        in the JSON, the tables, the leaderboard and the gate instead of missing from them (its pruner would
        otherwise rank as if it had finished the compressions it has)."""
        if self.cases is None or parameter_ids(crashitem) is None:
            return  # every cell is a parametrized test: no need to build the matrix (and import torch)
        if any(key == PROPERTY for key, _ in report.user_properties):
            return
        try:
            case = case_of(crashitem, self.cases())
        except Exception as exc:  # the matrix is the one the workers built; this only guards the report
            self.messages.append(
                f"a worker crashed while running {crashitem}; a pytest-prune cell there is missing from the "
                f"results ({type(exc).__name__}: {exc})"
            )
            return
        if case is not None:  # None: a test of another kind
            report.user_properties.append((PROPERTY, case.to_dict()))

    def pytest_runtest_logreport(self, report: Any) -> None:
        record = next((value for key, value in report.user_properties if key == PROPERTY), None)
        if record is None:
            return
        if isinstance(record, str):  # JSON text (``fixtures.pytest_runtest_makereport``); a crash report's is a dict
            record = json.loads(record)
        merged = self.records.setdefault(record["id"], {"tests": [], "outcome": "passed", "error": None})
        self.durations[record["id"]] = self.durations.get(record["id"], 0.0) + getattr(report, "duration", 0.0)
        outcome = (  # a crashed worker's report (xdist's phase "???") is an error too
            {"call": "failed"}.get(report.when, "error")
            if report.failed
            else ("skipped" if report.skipped else "passed")
        )
        merged.update({k: v for k, v in record.items() if k not in ("outcome", "error", "tests")})
        if report.nodeid not in merged["tests"]:
            merged["tests"] = sorted([*merged["tests"], report.nodeid])
        if report.when == "setup" and report.passed:
            self.unfinished.setdefault(record["id"], set()).add(report.nodeid)
        elif report.when == "call":
            self.unfinished.get(record["id"], set()).discard(report.nodeid)
        if OUTCOME_RANK[outcome] > OUTCOME_RANK[merged["outcome"]]:
            merged["outcome"] = outcome
            merged["error"] = _crash_message(report) if report.failed else None
        if report.when not in ("setup", "call") and self.settings.json_path is not None:  # teardown, or a crash
            try:
                self.write()
            except OSError as exc:  # a full disk must not end the session: the records stay in memory
                if not self.unwritten:
                    self.messages.append(f"results JSON not rewritten after a cell ({exc}); retried at the end")
                self.unwritten = True

    def sorted_records(self) -> list[dict[str, Any]]:
        """Records in a stable order (dataset, arch, pruner, compression, seed), whatever the run order.

        A cell whose test was set up but never reported its call (an interrupt, or still running when the JSON
        is rewritten) has no verdict yet: it is an error, never the "passed" its setup alone would say.
        """
        return sorted(
            (self._judged(record) for record in self.records.values()),
            key=lambda r: (r["dataset"], r["arch"], r["pruner"], r["compression"], r["seed"]),
        )

    def _judged(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self.unfinished.get(record["id"]) or OUTCOME_RANK[record["outcome"]] >= OUTCOME_RANK["error"]:
            return record
        return {**record, "outcome": "error", "error": INTERRUPTED}

    def write(self) -> None:
        """Rewrite the JSON file with every record so far."""
        if self.settings.json_path is not None:
            write_json(self.settings.json_path, self.environment, self.sorted_records())

    def pytest_sessionfinish(self, session: Any) -> None:
        """Write the JSON and the leaderboard, and apply the baseline gate (a regression fails the session)."""
        if not self.records:  # nothing to write
            json_path = self.settings.json_path
            collecting = session.config is not None and session.config.option.collectonly
            benchmarking = self.settings.bench or session.exitstatus == 5  # not a run of other tests
            if json_path is not None and json_path.exists() and benchmarking and not collecting:  # say so
                self.messages.append(
                    f"results JSON {json_path} not rewritten: no pytest-prune cell ran, so it "
                    "still holds an earlier run's results"
                )
            if self.baseline is None:
                return
            config = session.config
            if config.option.collectonly or config.getoption("prune_baseline") is None:
                # nothing benchmarked: --collect-only, or a run under a baseline the ini file sets for every run
                self.messages.append("baseline gate: no pytest-prune cell ran, nothing compared")
                return
            self.messages.append("baseline gate: no pytest-prune cell ran")  # its every cell is missing
        else:
            if (stopped := _stopped_early(session)) and (unfinished := self._unfinished()):
                # the JSON and the leaderboard say they hold part of the matrix
                self.environment["interrupted"] = f"{stopped}; {unfinished} cell(s) of the matrix did not finish"
                self.messages.append(f"the run stopped early ({self.environment['interrupted']}): results are partial")
            if self.settings.json_path is not None:
                try:
                    self.write()
                    self.messages.append(f"results JSON written to {self.settings.json_path}")
                except OSError as exc:
                    self.messages.append(f"results JSON NOT written to {self.settings.json_path}: {exc}")
                    if session.exitstatus in (0, 5):
                        session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED: the results are not where asked
            self.messages += self._short_eps_samples() + self._unmeasured_robustness()
            if self.settings.leaderboard is not None:
                from .report.leaderboard import write_leaderboard

                self.messages += write_leaderboard(self.settings.leaderboard, self.sorted_records(), self.environment)
                self.messages.append(f"leaderboard written to {self.settings.leaderboard}")
        if self.baseline is not None:
            from .gate import compare

            self.findings = compare(self.baseline["results"], self.sorted_records(), self.settings.tolerance)
            # a run that collected no test at all (exit 5) must not pass a gate whose cells are all missing
            if any(f.regression for f in self.findings) and session.exitstatus in (0, 5):
                session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED

    def _short_eps_samples(self) -> list[str]:
        """A line per dataset whose test set is smaller than ``--prune-eps-images``: its cells sampled all of it."""
        asked = self.settings.eps_images
        short = {r["dataset"]: r["eps_images"] for r in self.records.values() if (r.get("eps_images") or asked) < asked}
        return [
            f"eps-agreement on {dataset} sampled all {images} test images (--prune-eps-images asks {asked})"
            for dataset, images in sorted(short.items())
        ]

    def _unfinished(self) -> int:
        """Cells of the matrix without a finished record: never reported, or cut off in their test. A matrix
        that cannot be built here (no ``cases``) counts only the cut-off ones."""
        judged = {r["id"]: r for r in self.sorted_records()}
        cut = sum(r["error"] == INTERRUPTED for r in judged.values())
        try:
            ids = [case.id for case in self.cases()] if self.cases is not None else []
        except Exception:  # the matrix the run built; if it cannot be rebuilt, say what the records show
            ids = []
        return cut + sum(i not in judged for i in ids)

    def _unmeasured_robustness(self) -> list[str]:
        """With ``--prune-robustness``, a line naming the cells that finished without it: robustness (and speed)
        is measured by the ``prune_result`` fixture, which a test of the user's own need not request."""
        if not self.settings.robustness:
            return []
        unmeasured = [
            r["id"]
            for r in self.sorted_records()
            if r["outcome"] in ("passed", "failed") and r.get("agreement") is None
        ]
        if not unmeasured:
            return []
        named = ", ".join(unmeasured[:3]) + (f" and {len(unmeasured) - 3} more" if len(unmeasured) > 3 else "")
        return [
            f"--prune-robustness measured nothing in {len(unmeasured)} cell(s) whose tests do not request "
            f"prune_result (it runs the speed and robustness measurements): {named}"
        ]

    def counts(self) -> str:
        """``30 cells: 28 passed, 1 failed, 1 error; 18 from the cache; 71.2 s in cells``."""
        records = self.sorted_records()
        outcomes = [r["outcome"] for r in records]
        parts = [f"{outcomes.count(o)} {o}" for o in ("passed", "failed", "error", "skipped") if outcomes.count(o)]
        text = f"{len(outcomes)} cell(s): {', '.join(parts)}"
        notes = [r.get("cache") or "" for r in records]
        if any(notes):
            cached = notes.count("cached")
            partly = sum(n.startswith("cached ") for n in notes)
            text += f"; {cached} from the cache" + (f", {partly} partly" if partly else "")
            recomputed = sum(n.startswith("recomputed") for n in notes)
            if recomputed:
                text += f", {recomputed} recomputed over a corrupt cache entry"
        return text + f"; {sum(self.durations.values()):.1f} s in cells"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records and not self.messages:
            return
        from .report.tables import summary_tables

        tables = summary_tables(self.sorted_records()) if self.records else []
        if self.settings.robustness:
            from .report.robustness import robustness_tables

            tables += robustness_tables(self.sorted_records(), self.settings.delta, self.settings.compressions)
        for title, table in tables:
            terminalreporter.write_sep("=", title)
            terminalreporter.write_line(table)
        if self.records:
            terminalreporter.write_sep("-", "pytest-prune: " + self.counts())
        for message in self.messages:
            terminalreporter.write_line(f"pytest-prune: {message}")
        if self.findings is not None:
            from .gate import verdict

            regressed = any(f.regression for f in self.findings)
            versions = (
                (self.baseline or {}).get("environment", {}).get("pytest_prune"),
                self.environment.get("pytest_prune"),
            )
            for i, line in enumerate(verdict(self.findings, str(self.settings.baseline), versions)):
                terminalreporter.write_line(
                    ("pytest-prune baseline gate: " if i == 0 else "") + line, red=regressed, green=not regressed
                )
