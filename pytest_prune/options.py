"""The ``--prune-*`` options (each with its ``prune_*`` ini twin) and the defaults they fall back to.

``plugin`` registers these with pytest; ``settings.build`` parses and checks their values.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DATASETS = ("mnist5k",)
DEFAULT_ARCHS = ("lenet300_100", "lenet5")
DEFAULT_PRUNERS = ("random", "global_magnitude", "layer_magnitude")
DEFAULT_COMPRESSIONS = (2.0, 4.0, 8.0, 16.0, 32.0)
DEFAULT_EPOCHS = 2
DEFAULT_SEED = 0
DEFAULT_THREADS = 1
CORRUPTION_NAMES = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "defocus_blur",
    "contrast",
    "brightness",
    "saturate",
    "pixelate",
    "jpeg",
    "rotation",
    "translation",
)
"""The corruption suite of ``--prune-robustness`` (pytest_prune.robustness.corruptions holds the code)."""
DEFAULT_EPS = (0.1, 0.2, 0.3, 0.5, 0.7)
DEFAULT_TOLERANCE = 1.0
DEFAULT_PROGRESS = 10.0


@dataclass(frozen=True)
class Option:
    """One ``--prune-*`` option and its ``prune_*`` ini twin."""

    name: str  # e.g. "compression" → --prune-compression / prune_compression
    help: str
    kind: str = "string"  # string | bool | list
    metavar: str | None = None
    paths: str | None = None  # "path": a file or folder; "specs": SPECs that may name a path.py (ini-relative)

    @property
    def flag(self) -> str:
        return "--prune-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "prune_" + self.name


OPTIONS = (
    Option("bench", "collect the built-in benchmark suite (the embedded default matrix)", "bool"),
    Option(
        "conformance",
        "check the pruners (--prune-pruner) against hypothesis conformance properties instead of benchmarking them",
        "bool",
    ),
    Option(
        "pruner",
        "pruner SPEC[,SPEC...]: name, glob, module:function or path.py:function "
        "(repeatable; default: the built-in baselines)",
        "list",
        "SPEC",
        "specs",
    ),
    Option("dataset", "dataset name(s), comma separated (default: mnist5k)", "list", "NAME", "specs"),
    Option("arch", "architecture name(s), comma separated (default: lenet300_100,lenet5)", "list", "NAME", "specs"),
    Option(
        "compression",
        "target compressions (total/nonzero params), e.g. 2,4,8,16,32 (the default)",
        "list",
        "LIST",
    ),
    Option(
        "epochs",
        f"finetuning epochs after pruning (default {DEFAULT_EPOCHS}, or the --prune-recipe's own epochs)",
        metavar="N",
    ),
    Option(
        "recipe",
        "finetuning recipe: default, shrinkbench, lost-in-pruning-resnet, lost-in-pruning-vgg-retrain, ... "
        "(pytest_prune.recipes.RECIPES; recorded in every result)",
        metavar="NAME",
    ),
    Option(
        "data_root",
        "folder holding the standard datasets (mnist, fashion_mnist, cifar10, cifar100, imagenet); "
        "default: the PYTEST_PRUNE_DATA environment variable",
        metavar="DIR",
        paths="path",
    ),
    Option("seed", f"seed for pruning and finetuning (default {DEFAULT_SEED})", metavar="N"),
    Option(
        "repeats",
        "run every cell with N seeds (--prune-seed, +1, ...); the summary shows mean ± std, the JSON keeps "
        "every repeat (default 1)",
        metavar="N",
    ),
    Option(
        "schedule",
        "oneshot (the default: prune once, then finetune) or iterative:N (N prune→finetune rounds on a "
        "geometric path to the target compression, each round finetuning --prune-epochs epochs)",
        metavar="SCHEDULE",
    ),
    Option(
        "device",
        "torch device for pruning, finetuning and evaluation (default cpu); cuda:auto gives xdist worker gwN "
        "the GPU N mod the GPU count",
        metavar="DEVICE",
    ),
    Option(
        "threads",
        f"torch CPU threads per cell (default {DEFAULT_THREADS}; results depend on it bit for "
        "bit, so serial and -n runs agree only with the same value)",
        metavar="N",
    ),
    Option(
        "latency",
        "batch sizes at which to time inference, e.g. 1,64 (the default); 'off' skips timing",
        "string",
        "LIST",
    ),
    Option(
        "latency_repeats",
        "timed rounds per batch size, one forward pass of each model (dense, masked, compacted) a round "
        "(default 15, after 3 warm-up passes)",
        metavar="N",
    ),
    Option(
        "robustness",
        "also measure corruption robustness, functional similarity to the dense parent and prune potential",
        "bool",
    ),
    Option(
        "corruptions",
        "corruptions for --prune-robustness, comma separated (default: all of " + ", ".join(CORRUPTION_NAMES) + ")",
        "list",
        "LIST",
    ),
    Option("severities", "corruption severities 1-5 for --prune-robustness (default 1,2,3,4,5)", "list", "LIST"),
    Option(
        "delta",
        "prune potential: the largest sparsity whose top-1 error is within POINTS of the dense error (default 0.5)",
        metavar="POINTS",
    ),
    Option(
        "eps",
        "L-inf radii of uniform input noise (normalised input space) for eps-agreement (default 0.1,0.2,0.3,0.5,0.7)",
        "list",
        "LIST",
    ),
    Option("eps_images", "test images sampled for eps-agreement (default 250)", metavar="N"),
    Option("eps_draws", "noise draws per image and eps (default 10)", metavar="N"),
    Option("json", "write the results JSON to PATH (rewritten after every cell)", metavar="PATH", paths="path"),
    Option(
        "leaderboard",
        "write a markdown leaderboard to PATH at the end of the session, with plots beside it (matplotlib)",
        metavar="PATH",
        paths="path",
    ),
    Option(
        "baseline",
        "results JSON of an earlier run: fail the session when a cell's top-1 falls more than --prune-tolerance "
        "below it, its compression or MACs change, or one of its cells is missing",
        metavar="PATH",
        paths="path",
    ),
    Option(
        "tolerance",
        f"points of top-1 a cell may lose against --prune-baseline (default {DEFAULT_TOLERANCE:g}; with repeats, "
        "beyond two standard errors of the difference)",
        metavar="POINTS",
    ),
    Option(
        "no_cache",
        "neither read nor write the content-keyed cell cache (results are always recomputed)",
        "bool",
    ),
    Option(
        "progress",
        f"report training/finetuning progress when an activity has run SECONDS since its last report "
        f"(default {DEFAULT_PROGRESS:g}; 0 = every epoch; 'off')",
        metavar="SECONDS",
    ),
    Option(
        "max_drop",
        "fail a cell whose top-1 falls more than POINTS below the dense model "
        "(used where no shipped expectation applies; default 5)",
        metavar="POINTS",
    ),
    Option("min_top1", "fail a cell whose top-1 is below PERCENT", metavar="PERCENT"),
)

DEFAULT_MAX_DROP = 5.0

ROBUSTNESS_ONLY = ("corruptions", "severities", "eps", "eps_images", "eps_draws")
"""Options that only choose what ``--prune-robustness`` measures."""
