from __future__ import annotations

import pytest

from pytest_prune.settings import SettingsError, build, parse_compressions, split_list


def test_defaults_are_the_embedded_benchmark():
    s = build({})
    assert (s.datasets, s.archs, s.compressions) == (
        ("mnist5k",),
        ("lenet300_100", "lenet5"),
        (2, 4, 8, 16, 32),
    )
    assert s.pruners == ("random", "global_magnitude", "layer_magnitude")


def test_lists_split_on_commas_and_repeats():
    assert split_list(["a,b", "c", "a"]) == ("a", "b", "c")
    s = build({"pruner": ["x.py:f", "global_*"], "compression": ["2,8x"], "epochs": "0", "threads": "2"})
    assert s.pruners == ("x.py:f", "global_*")
    assert (s.compressions, s.epochs, s.threads) == ((2.0, 8.0), 0, 2)
    # an ini list of numbers (prune_compression = [2, 4] in pyproject.toml) arrives as numbers
    assert split_list([2, 4.5]) == ("2", "4.5")
    assert build({"compression": [2, 4], "severities": [1, 3]}).compressions == (2.0, 4.0)


def test_a_spec_list_keeps_the_spaces_of_a_path():
    s = build(
        {"pruner": [" my pruners/x.py:f , random\r\nglobal_*\r"], "arch": ["My Nets/n.py:net"], "dataset": "digits"}
    )
    assert s.pruners == ("my pruners/x.py:f", "random", "global_*")
    assert (s.archs, s.datasets) == (("My Nets/n.py:net",), ("digits",))


@pytest.mark.parametrize(
    ("values", "message"),
    [(["0.5"], "'0.5' is below 1"), (["eight"], "'eight' is not a number"), (["inf"], "not finite")],
)
def test_bad_compressions_are_named(values, message):
    with pytest.raises(SettingsError, match=message):
        parse_compressions(values)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"min_top1": "0.9"}, "looks like a fraction; give a percentage \\(e.g. 90\\)"),
        ({"min_top1": "120"}, "above 100"),
        ({"epochs": "two"}, "--prune-epochs: 'two' is not a whole number"),
        ({"epochs": "2.5"}, "--prune-epochs: '2.5' is not a whole number"),
        ({"seed": str(10**15)}, "--prune-seed 1000000000000000 with --prune-repeats 1 passes 1099511627776"),
        ({"compression": "1.5,1.5000001"}, "--prune-compression: 1.5 and 1.5000001 are one cell id \\(1.5x\\)"),
        ({"max_drop": "lots"}, "--prune-max-drop: 'lots' is not a number"),
        ({"threads": "0"}, "--prune-threads: '0' must be ≥ 1"),
        ({"max_drop": "-1"}, "--prune-max-drop"),
        ({"repeats": "0"}, "--prune-repeats: '0' must be ≥ 1"),
        ({"schedule": "iterative"}, "--prune-schedule: 'iterative' is not a schedule; use oneshot or iterative:N"),
        ({"schedule": "iterative:1"}, "fewer than 2 rounds; iterative:1 is oneshot"),
        ({"schedule": "gradual:3"}, "not a schedule"),
        ({"max_drop": "nan"}, "--prune-max-drop: 'nan' is not a finite number"),  # nan passes every threshold
        ({"min_top1": "nan"}, "--prune-min-top1: 'nan' is not a finite number"),
        ({"tolerance": "nan"}, "--prune-tolerance: 'nan' is not a finite number"),
        ({"delta": "inf"}, "--prune-delta: 'inf' is not a finite number"),
        ({"eps": "0.1,nan"}, "--prune-eps: 'nan' is not a finite number"),
        ({"eps": "0.1,0.10"}, "--prune-eps: '0.1' and '0.10' are one radius to 6 significant digits"),
        ({"eps": "0.25,0.2500001"}, "--prune-eps: '0.25' and '0.2500001' are one radius"),
        # a list option given but naming nothing is an error, not the default (every corruption, say)
        ({"corruptions": ","}, "--prune-corruptions: ',' names nothing; give one or more values separated by commas"),
        ({"compression": " , "}, "--prune-compression: ' , ' names nothing"),
        ({"corruptions": [",", ""]}, "--prune-corruptions: ',,' names nothing"),  # the option given twice
        ({"pruner": ",\n"}, "--prune-pruner: .* names nothing"),
        ({"delta": "200"}, "--prune-delta: 200 points is the whole top-1 range, so every sparsity would pass"),
    ],
)
def test_bad_numbers_are_named(raw, message):
    with pytest.raises(SettingsError, match=message):
        build(raw)


def test_schedule_and_repeats():
    s = build({"schedule": "Iterative:4", "repeats": "3", "seed": "5"})
    assert (s.rounds, s.schedule, s.seeds) == (4, "iterative:4", (5, 6, 7))
    assert (build({}).schedule, build({}).seeds) == ("oneshot", (0,))
    assert build({"schedule": "oneshot"}).rounds == 1


def test_cuda_auto_gives_each_xdist_worker_its_own_gpu():
    from pytest_prune.settings import SettingsError, resolve_device

    assert [resolve_device("cuda:auto", f"gw{n}", 4) for n in range(6)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
        "cuda:1",
    ]
    assert resolve_device("cuda:auto", None, 2) == "cuda:0"  # a plain run
    assert resolve_device("cuda:1", "gw3", 4) == "cuda:1"  # an explicit device is kept
    with pytest.raises(SettingsError, match="cuda:auto: no CUDA device is available; use --prune-device cpu"):
        resolve_device("cuda:auto", "gw0", 0)


def test_workers_timing_on_one_gpu_are_told_their_latencies_contend():
    """On an H100 with -n 8 --prune-device cuda, masked models (the dense kernels) measured 0.82x-1.52x."""
    from pytest_prune.settings import shared_device

    assert "8 xdist workers time their models on cuda at once" in shared_device("cuda", 8, 1)
    assert "on cuda:1 at once" in shared_device("cuda:1", 2, 4)  # an explicit device is every worker's
    assert "on 2 GPU(s) at once" in shared_device("cuda:auto", 4, 2)
    assert shared_device("cuda:auto", 4, 4) is None  # a GPU per worker
    assert shared_device("cuda", 1, 1) is None  # a plain run
    assert shared_device("cpu", 8, 1) is None  # each worker times on its own CPU thread(s)


def test_a_device_torch_cannot_compute_on_is_a_usage_error():
    from pytest_prune.plugin import _check_device

    with pytest.raises(pytest.UsageError, match="--prune-device meta: torch cannot compute there"):
        _check_device(build({"device": "meta"}), None)
    with pytest.raises(pytest.UsageError, match="--prune-device: 'abacus' is not a torch device"):
        _check_device(build({"device": "abacus"}), None)


def test_output_files_are_checked_before_any_work(tmp_path):
    from pytest_prune.plugin import _check_outputs

    def check(**raw):
        _check_outputs(build({key: str(value) for key, value in raw.items()}))

    check(json=tmp_path / "new" / "r.json", leaderboard=tmp_path / "LB.md")
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())  # no probe left behind
    same = r"--prune-leaderboard .*same.json is also --prune-json .*same.json: one would overwrite the other"
    with pytest.raises(pytest.UsageError, match=same):
        check(json=tmp_path / "same.json", leaderboard=tmp_path / "." / "same.json")
    (tmp_path / "base.json").write_text("{}")  # the baseline it is gated on (read later, so not checked here)
    for output in ("json", "leaderboard"):
        with pytest.raises(pytest.UsageError, match=f"--prune-{output} .*base.json is also --prune-baseline "):
            check(**{output: tmp_path / "base.json"}, baseline=tmp_path / "base.json")
    with pytest.raises(pytest.UsageError, match="--prune-json .*: is a folder; give a file name"):
        check(json=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(pytest.UsageError, match="--prune-leaderboard .*file/LB.md: cannot create the folder"):
        check(leaderboard=tmp_path / "file" / "LB.md")


def test_home_in_output_paths_is_expanded_as_pytest_expands_junitxml(tmp_path, monkeypatch):
    """`--prune-json=~/r.json` reaches pytest-prune unexpanded (the shell expands only a leading ~)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    s = build({"json": "~/r.json", "leaderboard": "~/LB.md", "baseline": "~/base.json", "data_root": "~/data"})
    assert (s.json_path, s.leaderboard, s.baseline) == (tmp_path / "r.json", tmp_path / "LB.md", tmp_path / "base.json")
    assert s.data_root == tmp_path / "data"


@pytest.mark.parametrize("word", ["off", "Off", "OFF"])
def test_off_turns_latency_and_progress_off_in_any_case(word):
    settings = build({"latency": word, "progress": word})
    assert settings.latency_batches == () and settings.progress is None


def test_a_latency_list_that_only_contains_off_among_numbers_is_refused():
    with pytest.raises(SettingsError, match="--prune-latency: 'off' is not a whole number"):
        build({"latency": "1,off"})


def test_a_progress_interval_that_is_no_number_says_off_is_the_other_choice():
    with pytest.raises(SettingsError, match=r"--prune-progress: 'never' is not a number; give seconds .*, or off"):
        build({"progress": "never"})
