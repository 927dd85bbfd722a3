"""The ``pytest-prune`` console script: train reference models, turn a results JSON into expectations."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

BUILTIN_PAIRS = [(d, a) for d in ("mnist5k", "digits") for a in ("lenet300_100", "lenet5", "resnet20")]


def _train(args: argparse.Namespace) -> int:
    from .reference import write_reference
    from .registry import load_builtins
    from .train import PRETRAIN

    load_builtins()
    pairs = BUILTIN_PAIRS if args.all else [(args.dataset, args.arch)]
    if not args.all and not (args.dataset and args.arch):
        print("pytest-prune train: give --dataset and --arch, or --all", file=sys.stderr)
        return 2
    recipe = PRETRAIN if args.epochs is None else PRETRAIN.with_epochs(args.epochs)
    for dataset_name, arch in pairs:

        def progress(epoch: int, loss: float, name: str = f"{dataset_name}/{arch}") -> None:
            print(f"  {name}: epoch {epoch}/{recipe.epochs} loss {loss:.4f}", flush=True)

        entry = write_reference(Path(args.out), dataset_name, arch, recipe, args.threads, progress, args.seed)
        print(
            f"{dataset_name}/{arch}: top-1 {entry['top1']:.2%} -> {Path(args.out) / entry['file']}",
            flush=True,
        )
    return 0


def _expect(args: argparse.Namespace) -> int:
    from .thresholds import expectations_from_results

    written = expectations_from_results([Path(p) for p in args.results], Path(args.output), args.margin)
    print(f"wrote {written} expectations to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pytest-prune`` command."""
    parser = argparse.ArgumentParser(prog="pytest-prune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a reference model and record it in the manifest")
    train.add_argument("--dataset", help="dataset name, e.g. mnist5k")
    train.add_argument("--arch", help="architecture name, e.g. lenet5")
    train.add_argument("--all", action="store_true", help="every built-in (dataset, architecture) pair")
    train.add_argument("--out", default="reference_models", help="folder for weights and manifest.json")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (recorded; default 1)")
    train.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
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
    expect.add_argument("--margin", type=float, default=1.5, help="points below the measured top-1 (default 1.5)")
    expect.set_defaults(run=_expect)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
