"""Standard datasets from a data root, end to end: reference trained on the fly, recipe recorded, errors."""

from __future__ import annotations

import json
import sys

from plugin.conftest import records
from unit.test_disk_data import make_cifar, make_mnist

ARGS = (
    "--prune-bench",
    "--prune-arch=lenet300_100",
    "--prune-pruner=global_magnitude",
    "--prune-compression=4",
    "--prune-epochs=1",
    "--prune-max-drop=100",
    "--prune-latency=off",
    "--prune-json=out.json",
    "-p",
    "no:randomly",
)


def test_mnist_and_cifar10_from_a_data_root(pytester, monkeypatch):
    make_mnist(pytester.path / "data" / "mnist", gz=True, train=60, test=20)
    make_cifar(pytester.path / "data", "cifar10", per_batch=12, test=10)
    monkeypatch.setenv("PYTEST_PRUNE_DATA", str(pytester.path / "data"))
    result = pytester.runpytest(*ARGS, "--prune-dataset=mnist,cifar10", "--prune-recipe=shrinkbench")
    result.assert_outcomes(passed=2)
    by_dataset = {r["dataset"]: r for r in records(pytester.path / "out.json")}
    assert by_dataset["cifar10"]["finetune"]["augmentation"] == "crop4+flip"
    assert by_dataset["mnist"]["finetune"]["augmentation"] is None
    assert {r["finetune"]["name"] for r in by_dataset.values()} == {"shrinkbench"}
    assert all(r["weights"] == "trained" and abs(r["compression_achieved"] - 4) < 0.05 for r in by_dataset.values())
    environment = json.loads((pytester.path / "out.json").read_text())["environment"]
    assert environment["recipe"] == "shrinkbench" and environment["epochs"] == 1


def test_a_missing_data_root_errors_its_cells_with_the_layout(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_PRUNE_DATA", raising=False)
    result = pytester.runpytest(*ARGS, "--prune-dataset=cifar100,digits")
    result.assert_outcomes(passed=1, errors=1)
    row = next(r for r in records(pytester.path / "out.json") if r["dataset"] == "cifar100")
    assert "give --prune-data-root DIR (`pytest-prune train --data-root DIR`), or set PYTEST_PRUNE_DATA" in row["error"]
    assert "cifar-100-python/{train, test}" in row["error"]
    # the message is the whole report: no harness traceback in front of it
    result.stdout.fnmatch_lines(["*ERROR at setup of test_prune[[]cifar100-*", "DataError: dataset 'cifar100'*"])
    assert "staging.py" not in result.stdout.str() and "Traceback" not in result.stdout.str()


def test_pytest_prune_train_reads_the_data_root_and_records_the_recipe(pytester):
    make_mnist(pytester.path / "data" / "MNIST" / "raw", train=40, test=10)
    out, root = pytester.path / "refs", str(pytester.path / "data")
    cli = (sys.executable, "-m", "pytest_prune.cli", "train")
    missing = pytester.run(*cli, "--dataset", "fashion_mnist", "--arch", "lenet5", "--data-root", root)
    assert missing.ret == 2  # no Fashion-MNIST files there: the error names the expected layout
    assert "fashion_mnist/lenet5: dataset 'fashion_mnist': train-images-idx3-ubyte" in missing.stderr.str()
    made = pytester.run(
        *cli, "--dataset", "mnist", "--arch", "lenet300_100", "--data-root", root, "--out", str(out), "--epochs", "2"
    )
    assert made.ret == 0, made.stderr.str()
    entry = json.loads((out / "manifest.json").read_text())["models"]["mnist/lenet300_100"]
    assert entry["recipe"]["name"] == "pretrain" and entry["recipe"]["epochs"] == 2
    assert (out / entry["file"]).is_file()
