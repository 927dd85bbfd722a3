"""Leaderboard markdown (golden file), ranking by area under top-1 vs log-compression, plots optional."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_prune.report.leaderboard import area, leaderboard, write_leaderboard

GOLDEN = Path(__file__).parent.parent / "data" / "leaderboard.md"
ENVIRONMENT = {
    "pytest_prune": "0.1.0",
    "torch": "2.13.0+cpu",
    "python": "3.11.7",
    "platform": "Linux-x86_64",
    "epochs": 2,
    "schedule": "oneshot",
    "threads": 1,
    "device": "cpu",
    "delta_points": 0.5,
    "started": "2026-11-22T00:00:00+00:00",
}


def record(arch, pruner, compression, seed, top1, **extra):
    dense = {"lenet5": 0.979, "resnet20": 0.983}[arch]
    out = {
        "id": f"mnist5k-{arch}-{pruner}-{compression:g}x-seed{seed}",
        "dataset": "mnist5k",
        "arch": arch,
        "pruner": pruner,
        "compression": float(compression),
        "seed": seed,
        "outcome": "passed" if top1 is not None else "error",
        "error": None if top1 is not None else "pruner 'broken' raised ValueError: no",
        "top1": top1,
        "dense_top1": dense,
        "params": 431080 if arch == "lenet5" else 272474,
        "dense_macs": 2293000 if arch == "lenet5" else 40551040,
        "compression_achieved": float(compression) if top1 is not None else None,
        "sparsity": 1 - 1 / compression if top1 is not None else None,
        "theoretical_speedup": compression * 0.95 if top1 is not None else None,
        "structural_speedup": 1.0 if top1 is not None else None,
    }
    out.update(extra)
    return out


def records():
    """Two boards; repeats on lenet5; an errored cell; magnitude beats random everywhere."""
    rows = []
    for seed, jitter in ((0, 0.0), (1, 0.002)):
        for c, gm, rnd in ((2, 0.978, 0.97), (8, 0.975, 0.93), (32, 0.96, 0.60)):
            rows.append(record("lenet5", "global_magnitude", c, seed, gm + jitter))
            rows.append(record("lenet5", "random", c, seed, rnd - jitter))
    for c, gm, rnd in ((2, 0.982, 0.98), (8, 0.97, 0.91), (32, 0.93, 0.45)):
        rows.append(record("resnet20", "global_magnitude", c, 0, gm, measured_speedup={"1": 1.1, "64": 1.3}))
        rows.append(record("resnet20", "random", c, 0, rnd))
    rows.append(record("resnet20", "broken", 2, 0, 0.5))
    rows.append(record("resnet20", "broken", 8, 0, None))
    rows.append(record("resnet20", "broken", 32, 0, 0.1))
    return rows


def test_the_leaderboard_matches_its_golden_file():
    text = leaderboard(records(), ENVIRONMENT, sources=["a.json", "b.json"])
    if os.environ.get("PYTEST_PRUNE_REGEN_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "set PYTEST_PRUNE_REGEN_GOLDEN=1 to regenerate after a deliberate change"


def test_the_leaderboard_is_deterministic_whatever_the_record_order():
    rows = records()
    assert leaderboard(rows, ENVIRONMENT) == leaderboard(list(reversed(rows)), ENVIRONMENT)


def test_ranking_content():
    text = leaderboard(records(), ENVIRONMENT)
    board = text.split("## mnist5k / resnet20")[1]
    assert board.index("`global_magnitude`") < board.index("`random`") < board.index("`broken`")
    assert "| incomplete | `broken`" in board and "| error " in board
    assert "97.60 ± 0.14 (-0.30)" in text  # lenet5 8x: mean of 0.975 and 0.977, sample std 0.14 points
    assert "| `global_magnitude` | 1.00        | 2 " in text  # rank 1 on both boards


def test_area_is_the_mean_top1_along_log_compression():
    assert area([(2.0, 0.9)]) == 0.9
    assert area([(2.0, 1.0), (8.0, 0.5)]) == pytest.approx(0.75)
    # uneven spacing weighs by log-distance: 2→4 is one unit, 4→32 three
    assert area([(32.0, 0.0), (2.0, 1.0), (4.0, 1.0)]) == pytest.approx((1.0 + 3 * 0.5) / 4)


def test_plots_are_drawn_beside_the_leaderboard_and_linked(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "board" / "LB.md"
    messages = write_leaderboard(path, records(), ENVIRONMENT)
    assert messages == []
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    assert pngs == [f"LB-mnist5k-{a}-{k}.png" for a in ("lenet5", "resnet20") for k in ("compression", "speedup")]
    assert all((path.parent / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert "![mnist5k / lenet5: top-1 vs compression](LB-mnist5k-lenet5-compression.png)" in path.read_text()


def test_without_matplotlib_the_leaderboard_says_so_and_is_still_written(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    path = tmp_path / "LB.md"
    messages = write_leaderboard(path, records(), ENVIRONMENT)
    assert len(messages) == 1 and "matplotlib is not installed" in messages[0]
    assert "pip install 'pytest-prune[plot]'" in messages[0]
    text = path.read_text()
    assert "_plots not drawn: matplotlib is not installed" in text and "## Overall" in text
    assert not list(tmp_path.glob("*.png"))


def test_boards_with_robustness_show_prune_potential_under_shift_and_excess_error():
    rows = []
    for seed in (0, 1):
        for c, top1, noisy in ((2, 0.979, 0.95), (8, 0.976, 0.90), (32, 0.96, 0.70)):
            rows.append(
                record(
                    "lenet5",
                    "global_magnitude",
                    c,
                    seed,
                    top1,
                    corruption_top1={"gaussian_noise": {"3": noisy}, "contrast": {"3": top1 - 0.004}},
                    dense_corruption_top1={"gaussian_noise": {"3": 0.95}, "contrast": {"3": 0.975}},
                    corruption_mean_top1=(noisy + top1 - 0.004) / 2,
                    dense_corruption_mean_top1=(0.95 + 0.975) / 2,
                    excess_error=(top1 - (noisy + top1 - 0.004) / 2) - (0.979 - (0.95 + 0.975) / 2) + 0.001 * seed,
                )
            )
    text = leaderboard(rows, ENVIRONMENT)
    section = text.split("Robustness (Lost in Pruning)")[1]
    (line,) = [row for row in section.splitlines() if row.startswith("| `global_magnitude`")]
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    # nominal: 8x (87.5% sparsity) is within 0.5 points of the dense 97.9, 32x is not; under gaussian noise
    # only 2x (50%) is within 0.5 points of the dense 95.0; contrast tracks nominal
    assert cells[1] == "87.50 ± 0.00"
    assert cells[3] == "50.00 ± 0.00 (gaussian_noise)"
    assert cells[4].startswith("+") and cells[6].startswith("+")  # excess error grows with compression
    assert float(cells[6].split()[0]) > float(cells[4].split()[0])
    assert "±" in cells[4]  # two seeds: mean ± std
    assert "Robustness" not in leaderboard(records(), ENVIRONMENT)  # no robustness records, no section
    settings = {"corruptions": ["gaussian_noise", "contrast"], "severities": [3], "eps": [0.1], "eps_images": 250}
    footer = leaderboard(rows, {**ENVIRONMENT, "robustness": {**settings, "eps_draws": 10}}).split("---")[-1]
    assert "Robustness: 2 corruptions × severities 3; ε-agreement on 250 images × 10 draws at ε 0.1" in footer


def robust(top1_by_corruption, **extra):
    """A lenet5 cell measured under the corruptions given (each at severity 3, dense parent at 0.979)."""
    return record(
        "lenet5",
        "global_magnitude",
        2,
        0,
        0.979,
        corruption_top1={name: {"3": top1} for name, top1 in top1_by_corruption.items()},
        dense_corruption_top1={name: {"3": 0.979} for name in top1_by_corruption},
        corruption_mean_top1=sum(top1_by_corruption.values()) / len(top1_by_corruption),
        dense_corruption_mean_top1=0.979,
        **extra,
    )


ROBUSTNESS = {"corruptions": ["gaussian_noise", "saturate"], "severities": [3], "eps": [0.1], "eps_draws": 10}


def test_the_footer_states_what_the_records_measured_not_what_was_asked():
    """Asked: two corruptions and 1,000 ε images; measured: one corruption (saturate skipped on grey images) and
    the 359 images the test set has."""
    row = robust({"gaussian_noise": 0.97}, eps_images=359, corruptions_skipped={"saturate": "needs 3 channels"})
    environment = {**ENVIRONMENT, "robustness": {**ROBUSTNESS, "eps_images": 1000}}
    footer = leaderboard([row], environment).split("---")[-1]
    assert "Robustness: 1 corruption (skipped: needs 3 channels) × severities 3; ε-agreement on 359 images" in footer


def test_the_worst_corruption_names_every_corruption_at_the_lowest_potential():
    def worst(top1_by_corruption):
        text = leaderboard([robust(top1_by_corruption)], ENVIRONMENT).split("Robustness (Lost in Pruning)")[1]
        (line,) = [row for row in text.splitlines() if row.startswith("| `global_magnitude`")]
        return line.split("|")[4].strip()

    # potential 50% where top-1 holds (capped: 2x is the whole sweep), 0 where it drops more than 0.5 points
    assert worst({"contrast": 0.90, "jpeg": 0.979}) == "0.00 (contrast)"
    assert worst({"contrast": 0.90, "jpeg": 0.90, "rotation": 0.979}) == "0.00 (contrast, jpeg)"
    assert worst({"contrast": 0.90, "jpeg": 0.90}) == "0.00 (every corruption)"
    five = {name: 0.90 for name in ("a", "b", "c", "d", "e")}
    assert worst({**five, "z": 0.979}) == "0.00 (a, b and 3 more)"


def test_the_worst_corruption_is_a_bound_only_when_every_tie_is():
    from pytest_prune.report.leaderboard import _worst_text

    def shift(name, capped, missing):
        return {"distribution": name, "prune_potential": 0.5, "capped": capped, "missing": missing}

    assert _worst_text([shift("a", True, None), shift("b", True, None)]) == "≥50.00 (every corruption)"
    assert _worst_text([shift("a", True, ["8x"]), shift("b", False, None)]) == "50.00 (every corruption)"
    assert _worst_text([shift("a", False, ["8x"]), shift("b", False, ["8x"])]) == "50.00\\* (every corruption)"


def test_a_merged_leaderboard_keeps_the_robustness_footer_and_every_file_s_sweep(tmp_path):
    """The first file has no robustness and ran 2x only; the second ran robustness at 2x and 8x."""
    import json

    from pytest_prune.cli import main
    from pytest_prune.results import write_json

    plain = {**ENVIRONMENT, "compressions": [2.0]}
    write_json(tmp_path / "a.json", plain, [record("lenet5", "random", 2, 0, 0.97)])
    robust_rows = [robust({"jpeg": 0.97}), {**robust({"jpeg": 0.97}), "id": "x-8x", "compression": 8.0}]
    environment = {**ENVIRONMENT, "compressions": [2.0, 8.0], "robustness": {**ROBUSTNESS, "eps_images": 250}}
    write_json(tmp_path / "b.json", environment, robust_rows)
    assert main(["leaderboard", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "LB.md")]) == 0
    text = (tmp_path / "LB.md").read_text()
    assert "Robustness: 1 corruption × severities 3" in text.split("---")[-1]
    assert "random: 8x (seed 0)" in text  # random's potential was computed without 8x, which b.json swept
    assert json.loads((tmp_path / "a.json").read_text())["environment"]["compressions"] == [2.0]


def test_the_ranking_area_is_correctly_rounded_on_every_python():
    """Python 3.12's sum() compensates rounding and 3.11's does not, so a plain sum printed 90.82 on one and
    90.83 on the other from the same JSON; terms that cancel tell the two apart."""
    # trapezoid terms 1e16, 1, -1e16 over three octaves: the exact mean is 1/3, a naive sum gives 0
    assert area([(2, 2e16), (4, 0.0), (8, 2.0), (16, -2e16 - 2)]) == 1 / 3


def board_of(text, arch="lenet5"):
    return text.split(f"## mnist5k / {arch}")[1].split("## ")[0]


def test_a_pruner_with_an_errored_seed_is_incomplete_not_ranked_on_the_seeds_that_finished():
    rows = [r for r in records() if r["arch"] == "lenet5"]
    rows = [
        record("lenet5", "random", 8, 1, None, error="mnist5k-lenet5-random-8x-seed1: pruner raised\nassert 0 > 1")
        if (r["pruner"], r["compression"], r["seed"]) == ("random", 8.0, 1)
        else r
        for r in rows
    ]
    board = board_of(leaderboard(rows, ENVIRONMENT))
    assert "| incomplete | `random`" in board
    assert "93.00 (-4.90) [1 of 2 seeds; error]" in board  # seed 0 alone, and says so
    assert "- mnist5k-lenet5-random-8x-seed1: error: pruner raised assert 0 > 1\n" in board  # one list item


def test_overall_a_pruner_complete_on_more_boards_outranks_one_that_errored_on_a_board():
    """`first` wins lenet5 but errors on resnet20; `second` is second on lenet5 and first on resnet20."""
    rows = []
    for c in (2, 8, 32):
        rows += [record("lenet5", "first", c, 0, 0.97), record("lenet5", "second", c, 0, 0.96)]
        rows += [record("resnet20", "first", c, 0, None if c == 8 else 0.98), record("resnet20", "second", c, 0, 0.97)]
    overall = leaderboard(rows, ENVIRONMENT).split("## Overall")[1]
    assert overall.index("`second`") < overall.index("`first`")
    assert "| 1   | `second` | 1.50        | 2 " in overall and "| 2   | `first`  | 1.00        | 1 " in overall


def test_a_first_seed_without_dense_fields_neither_crashes_nor_hides_the_parent():
    rows = [r for r in records() if r["arch"] == "lenet5"]
    bare = {"id": "x", "dataset": "mnist5k", "arch": "lenet5", "pruner": "global_magnitude", "compression": 2.0}
    rows[0] = {**bare, "seed": 0, "outcome": "error", "error": "x: killed", "top1": None}  # no dense fields at all
    text = leaderboard(rows, ENVIRONMENT)
    assert "Dense parent: top-1 97.90%, 431,080 parameters, 2.293M MACs." in board_of(text)
    from pytest_prune.report.tables import summary_tables

    assert "(dense top-1 97.90%, 431,080 params, 2.293M MACs)" in summary_tables(rows)[0][0]


def test_merged_grids_rank_over_the_compressions_every_pruner_has():
    rows = [r for r in records() if r["arch"] == "lenet5" and not (r["pruner"] == "random" and r["compression"] == 32)]
    board = board_of(leaderboard(rows, ENVIRONMENT))
    assert "| incomplete" not in board
    assert "Ranked over the compressions every pruner of this board has: 2x, 8x." in board
    # the mean of the 2x and 8x top-1 (seed means): global magnitude (97.9 + 97.6) / 2, random (96.9 + 92.9) / 2
    assert "| 1      | `global_magnitude` | 97.75" in board and "| 2      | `random`           | 94.90" in board


def test_a_pruner_that_errored_where_another_pruner_has_no_cell_is_still_incomplete():
    """random ran 2x and 8x only (merged hosts, or an interrupt before its 32x started): the board ranks over
    2x and 8x, but flaky's 32x errored, so flaky is incomplete, not ranked on the cells that finished."""
    rows = [r for r in records() if r["arch"] == "lenet5" and not (r["pruner"] == "random" and r["compression"] == 32)]
    rows += [record("lenet5", "flaky", c, seed, 0.99) for c in (2, 8) for seed in (0, 1)]
    rows += [record("lenet5", "flaky", 32, seed, None) for seed in (0, 1)]
    board = board_of(leaderboard(rows, ENVIRONMENT))
    flaky = next(line for line in board.splitlines() if "`flaky`" in line)  # its row of the ranking
    assert flaky.startswith("| incomplete")
    assert (
        next(line for line in board.splitlines() if line.startswith("| 1 ")).split("|")[2].strip()
        == "`global_magnitude`"
    )


def test_names_cannot_break_the_markdown_or_the_plot_links(tmp_path):
    rows = [{**r, "pruner": "a|b"} if r["pruner"] == "random" else r for r in records() if r["arch"] == "lenet5"]
    rows += [{**r, "arch": "tv:resnet18"} for r in records() if r["arch"] == "resnet20"]
    text = leaderboard(rows, ENVIRONMENT)
    assert "| `a\\|b` " in text and "`a|b`" not in text
    if pytest.importorskip("matplotlib"):
        rows.append({**rows[0], "pruner": "_private$x^2$"})  # mathtext and matplotlib's hidden-label prefix
        path = tmp_path / "My Board.md"
        assert write_leaderboard(path, rows, ENVIRONMENT) == []
        assert (tmp_path / "My Board-mnist5k-tv_resnet18-compression.png").is_file()
        assert "](<My Board-mnist5k-tv_resnet18-compression.png>)" in path.read_text()


def test_a_plot_that_fails_costs_the_plots_not_the_leaderboard(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from pytest_prune.report import plots

    def broken(*args, **kwargs):
        raise ValueError("bad\nmathtext")

    monkeypatch.setattr(plots, "_figure", broken)
    path = tmp_path / "LB.md"
    assert write_leaderboard(path, records(), ENVIRONMENT) == [
        "plots not drawn: matplotlib failed (ValueError: bad mathtext)"
    ]
    assert "## Overall" in path.read_text()


def test_a_robustness_run_in_which_no_cell_measured_it_says_so_instead_of_the_asked_settings():
    environment = {**ENVIRONMENT, "robustness": {**ROBUSTNESS, "eps_images": 250}}
    footer = leaderboard([record("lenet5", "random", 2, 0, 0.97)], environment).split("---")[-1]
    assert "Robustness: on, but no cell measured it" in footer and "250 images" not in footer


def test_cells_that_did_not_pass_are_listed_as_failures_or_errors():
    def heading(*outcomes):
        rows = [record("lenet5", "random", 2, 0, 0.97)]
        for i, outcome in enumerate(outcomes):
            row = record("lenet5", "random", 4, i, 0.5 if outcome == "failed" else None)
            row.update(outcome=outcome, error="top-1 50.00% is below the threshold" if outcome == "failed" else "no")
            rows.append(row)
        text = leaderboard(rows, ENVIRONMENT)
        return [line for line in text.splitlines() if line in ("Errors:", "Failures:", "Failures and errors:")]

    assert heading("failed") == ["Failures:"]
    assert heading("error") == ["Errors:"]
    assert heading("failed", "error") == ["Failures and errors:"]
