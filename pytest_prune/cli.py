"""The ``pytest-prune`` console script: train references, derive expectations, merge leaderboards, compare runs."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .files import output_problem, unwritable, user_path
from .options import DEFAULT_TOLERANCE
from .settings import parse_number


def _argument(convert: Callable[[str], Any], low: float) -> Callable[[str], Any]:
    """``settings.parse_number`` for argparse, which turns the error into a usage message (exit 2)."""

    def parse(text: str) -> Any:
        try:
            return parse_number(text, convert, low)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


_at_least_one = _argument(int, 1)
_points = _argument(float, 0)
"""A number of top-1 points: finite and ≥ 0."""


BUILTIN_PAIRS = [(d, a) for d in ("mnist5k", "digits") for a in ("lenet300_100", "lenet5", "resnet20")]


def _train(args: argparse.Namespace) -> int:
    import os

    from .recipes import RECIPES, pretrain_recipe
    from .reference import WeightsError, write_reference
    from .registry import load_builtins

    load_builtins()
    pairs = BUILTIN_PAIRS if args.all else [(args.dataset, args.arch)]
    if not args.all and not (args.dataset and args.arch):
        print("pytest-prune train: give --dataset and --arch, or --all", file=sys.stderr)
        return 2
    if args.recipe is not None and args.recipe not in RECIPES:
        print(
            f"pytest-prune train: unknown recipe {args.recipe!r}; valid: {', '.join(sorted(RECIPES))}", file=sys.stderr
        )
        return 2
    if problem := unwritable(Path(args.out)):  # before hours of training that could not be saved
        print(f"pytest-prune train: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    _not_read_note("train", Path(args.out))  # before hours of training, too
    root = args.data_root or os.environ.get("PYTEST_PRUNE_DATA")
    for dataset_name, arch in pairs:
        recipe = RECIPES[args.recipe] if args.recipe else pretrain_recipe(dataset_name, arch)
        recipe = recipe if args.epochs is None else recipe.with_epochs(args.epochs)

        def progress(epoch: int, loss: float, name: str = f"{dataset_name}/{arch}", total: int = recipe.epochs) -> None:
            print(f"  {name}: epoch {epoch}/{total} loss {loss:.4f}", flush=True)

        try:
            entry = write_reference(
                Path(args.out),
                dataset_name,
                arch,
                recipe,
                args.threads,
                progress,
                args.seed,
                user_path(root) if root else None,
            )
        except (ValueError, ImportError, WeightsError) as exc:  # DataError, SpecError, ...: the message says what to do
            print(f"pytest-prune train: {dataset_name}/{arch}: {exc}", file=sys.stderr)
            return 2
        print(
            f"{dataset_name}/{arch}: top-1 {entry['top1']:.2%} -> {Path(args.out) / entry['file']}",
            flush=True,
        )
    return 0


def _output_refused(command: str, args: argparse.Namespace) -> bool:
    """Print why ``-o`` cannot be written (a folder, or one of the results files read), before any work."""
    inputs = {f"results file {i + 1}": Path(path) for i, path in enumerate(args.results)}
    output = Path(args.output)
    problem = output_problem(output, inputs)
    if problem is None and (reason := unwritable(output.resolve().parent, output.name)):
        problem = f"{output}: {reason}"
    if problem:
        print(f"pytest-prune {command}: -o {problem}", file=sys.stderr)
    return problem is not None


def _not_read_note(command: str, folder: Path) -> None:
    """Tell when ``folder`` is not the one the plugin reads shipped weights and expectations from."""
    from .reference import reference_dir

    if folder.resolve() != reference_dir().resolve():
        print(
            f"note: pytest-prune reads shipped weights and expectations from {reference_dir()}, not {folder}: "
            f"run `pytest-prune {command}` from a checkout of pytest-prune to change what ships (elsewhere "
            "the first run of a pair trains its reference and caches it)",
            file=sys.stderr,
        )


def _expect(args: argparse.Namespace) -> int:
    from .thresholds import expectations_from_results

    if _output_refused("expect", args):
        return 2

    try:
        written = expectations_from_results([Path(p) for p in args.results], Path(args.output), args.margin)
    except ValueError as exc:  # ResultsError, or results of different conditions
        print(f"pytest-prune expect: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} expectations to {args.output}")
    _not_read_note("expect", Path(args.output).parent)
    seeds = json.loads(Path(args.output).read_text())["conditions"]["seeds"]
    if len(seeds) == 1:
        print(
            "note: measured with one seed, so a cell that collapses under another seed or on other hardware "
            "(random pruning at high compression) may fail there; --prune-repeats 3 gives floors that hold",
            file=sys.stderr,
        )
    return 0


def merged_environment(environments: list[dict[str, Any]]) -> dict[str, Any]:
    """The first file's environment, with every file's compressions (the sweep a pruner's prune potential is
    judged against) and the robustness settings of the first file that measured robustness."""
    out = dict(environments[0])
    out["compressions"] = sorted({float(c) for e in environments for c in e.get("compressions") or ()})
    out["robustness"] = next((e["robustness"] for e in environments if e.get("robustness")), out.get("robustness"))
    out["interrupted"] = next((e["interrupted"] for e in environments if e.get("interrupted")), None)
    return out


def _leaderboard(args: argparse.Namespace) -> int:
    from .report.leaderboard import write_leaderboard
    from .results_file import ResultsError, incomparable, load_results

    if _output_refused("leaderboard", args):
        return 2
    try:
        documents = [(Path(p), load_results(Path(p))) for p in args.results]
    except ResultsError as exc:
        print(f"pytest-prune leaderboard: {exc}", file=sys.stderr)
        return 2
    records: dict[tuple, dict] = {}
    for (path_a, a), (path_b, b) in itertools.combinations(documents, 2):  # every pair: not only with the first
        if why := incomparable(path_a, a["environment"], path_b, b["environment"], merging=True):
            print(f"pytest-prune leaderboard: {why}; their cells are not comparable", file=sys.stderr)
            return 2
    for path, document in documents:
        for record in document["results"]:
            key = (record["dataset"], record["arch"], record["pruner"], record["compression"], record["seed"])
            if key in records:
                print(f"note: {record['id']} is in several files; using {path}", file=sys.stderr)
            records[key] = record
    merged = [records[k] for k in sorted(records)]
    if not merged:
        print(f"pytest-prune leaderboard: {', '.join(args.results)} hold no result records", file=sys.stderr)
        return 2
    environment = merged_environment([document["environment"] for _, document in documents])
    for message in write_leaderboard(Path(args.output), merged, environment, [p.name for p, _ in documents]):
        print(f"note: {message}", file=sys.stderr)
    print(f"wrote the leaderboard of {len(merged)} records to {args.output}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .gate import compare, verdict
    from .results_file import ResultsError, incomparable, load_baseline, load_results

    try:
        baseline, current = load_baseline(Path(args.baseline)), load_results(Path(args.current))
    except ResultsError as exc:
        print(f"pytest-prune compare: {exc}", file=sys.stderr)
        return 2
    if why := incomparable(args.current, current["environment"], args.baseline, baseline["environment"]):
        print(f"pytest-prune compare: {why}", file=sys.stderr)
        return 2
    findings = compare(baseline["results"], current["results"], args.tolerance)
    versions = (baseline["environment"].get("pytest_prune"), current["environment"].get("pytest_prune"))
    print("\n".join(verdict(findings, args.baseline, versions)))
    return 1 if any(f.regression for f in findings) else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``pytest-prune`` command line: subcommands train, expect, leaderboard and compare."""
    parser = argparse.ArgumentParser(prog="pytest-prune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a reference model and record it in the manifest")
    train.add_argument("--dataset", help="dataset name, e.g. mnist5k")
    train.add_argument("--arch", help="architecture name, e.g. lenet5")
    train.add_argument("--all", action="store_true", help="every built-in (dataset, architecture) pair")
    train.add_argument("--out", default="reference_models", help="folder for weights and manifest.json")
    train.add_argument("--threads", type=_at_least_one, default=1, help="torch CPU threads (recorded; default 1)")
    train.add_argument("--epochs", type=_at_least_one, default=None, help="override the recipe's epochs")
    train.add_argument(
        "--recipe", default=None, help="training recipe name (default: the pair's standard one, see recipes.py)"
    )
    train.add_argument("--data-root", default=None, help="folder of the standard datasets (or PYTEST_PRUNE_DATA)")
    train.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: 0 = the pretrained parent (default), 1 = the separately trained reference model",
    )
    train.set_defaults(run=_train)
    expect = commands.add_parser("expect", help="derive accuracy expectations from results JSON files")
    expect.add_argument("results", nargs="+", help="results JSON written by --prune-json")
    expect.add_argument("-o", "--output", default="reference_models/expectations.json")
    expect.add_argument(
        "--margin",
        type=_points,
        default=1.5,
        help="floor = measured top-1 − (MARGIN points + 10%% of its drop below the dense model); default 1.5",
    )
    expect.set_defaults(run=_expect)
    board = commands.add_parser("leaderboard", help="merge results JSON files into a markdown leaderboard")
    board.add_argument("results", nargs="+", help="results JSON files written by --prune-json (merged)")
    board.add_argument("-o", "--output", default="LEADERBOARD.md", help="markdown file; plots go beside it")
    board.set_defaults(run=_leaderboard)
    cmp = commands.add_parser(
        "compare", help="exit 1 when CURRENT regressed against BASELINE (top-1, compression, MACs, missing cells)"
    )
    cmp.add_argument("baseline", help="results JSON of the reference run")
    cmp.add_argument("current", help="results JSON of the run to check")
    cmp.add_argument(
        "--tolerance",
        type=_points,
        default=DEFAULT_TOLERANCE,
        help="top-1 points a cell may lose (default %(default)s)",
    )
    cmp.set_defaults(run=_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pytest-prune`` command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
