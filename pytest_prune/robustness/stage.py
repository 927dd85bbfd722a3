"""The robustness stage of a cell: what ``--prune-robustness`` adds to its record.

The dense parent's corrupted accuracies and the separately trained model's similarity to the parent are
measured once per (dataset, architecture) in each process and shared by every cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..data.base import ImageDataset
from ..data.disk import DataError
from .measure import applicable, excess_error, functional_similarity, mean_top1, shifted_top1
from .pixels import PixelSpace

if TYPE_CHECKING:
    from torch import nn

    from ..pipeline import Cell, Store


def pixel_space(data: ImageDataset, name: str) -> PixelSpace:
    """The dataset's map to [0, 1] pixels; a clear error when it has none and is not in [0, 1] already, or
    when its inputs are not images."""
    if data.test_x.ndim != 4:
        raise DataError(
            f"dataset {name!r}: corruptions work on images, (N, C, H, W) tensors, and its inputs are "
            f"{tuple(data.test_x.shape[1:])} per sample; run it without --prune-robustness"
        )
    if not data.normalisation:
        low, high = float(data.test_x.min()), float(data.test_x.max())
        if low < 0 or high > 1:
            raise DataError(
                f"dataset {name!r} records no normalisation and its inputs span {low:.3g}..{high:.3g}, not [0, 1]: "
                "corruptions work on [0, 1] pixels, so give ImageDataset(normalisation={'mean': [...], 'std': [...]})"
            )
    try:
        return PixelSpace(data.normalisation, data.input_shape[0])
    except ValueError as exc:
        raise DataError(f"dataset {name!r}: {exc}") from None


def dense_robustness(store: Store, dataset_name: str, arch: str) -> dict[str, Any]:
    """The parent's corrupted top-1 and the separately trained model's similarity to it."""
    from ..reference import SEPARATE_SEED, load_pretrained
    from ..train import evaluate, torch_threads

    settings, data = store.settings, store.dataset(dataset_name)
    parent = store.dense(dataset_name, arch).model
    corruptions, skipped = applicable(settings.corruptions, data.input_shape[0])
    with torch_threads(settings.threads):
        table = shifted_top1(
            parent, data.test_x, data.test_y, pixel_space(data, dataset_name), corruptions, settings.severities
        )
        separate = load_pretrained(
            dataset_name,
            arch,
            data.to("cpu"),
            store.cache_dir,
            settings.threads,
            seed=SEPARATE_SEED,
            progress=store.progress,
        )
        model = separate.model.to(settings.device).eval()
        reference = functional_similarity(model, parent, data.test_x, settings)
        reference["top1"], _ = evaluate(model, data.test_x, data.test_y)
        reference["weights"], reference["weights_sha256"] = separate.origin, separate.sha256
    return {"corruptions": corruptions, "skipped": skipped, "top1": table, "reference": reference}


def cell_robustness(cell: Cell, model: nn.Module) -> None:
    """Measure the finetuned ``model`` of ``cell`` and add the robustness fields to its record."""
    from ..train import torch_threads

    store, case, fields = cell.store, cell.case, cell.fields
    settings, data = store.settings, store.dataset(case.dataset)
    dense = store.dense_robustness(case.dataset, case.arch)
    parent = store.dense(case.dataset, case.arch).model
    with torch_threads(settings.threads):
        table = shifted_top1(
            model,
            data.test_x,
            data.test_y,
            pixel_space(data, case.dataset),
            dense["corruptions"],
            settings.severities,
        )
        similar = functional_similarity(model, parent, data.test_x, settings)
    nominal, dense_nominal = fields["top1"], fields["dense_top1"]
    fields.update(
        corruption_top1=table,
        dense_corruption_top1=dense["top1"],
        corruptions_skipped=dense["skipped"] or None,
    )
    if table:
        fields.update(
            corruption_mean_top1=mean_top1(table),
            dense_corruption_mean_top1=mean_top1(dense["top1"]),
            excess_error=excess_error(nominal, mean_top1(table), dense_nominal, mean_top1(dense["top1"])),
            excess_error_by_corruption={
                name: excess_error(
                    nominal, mean_top1({name: table[name]}), dense_nominal, mean_top1({name: dense["top1"][name]})
                )
                for name in table
            },
        )
    reference = dense["reference"]
    fields.update(
        agreement=similar["agreement"],
        softmax_l2=similar["softmax_l2"],
        eps_agreement=similar["eps_agreement"],
        eps_images=similar["eps_images"],
        reference_agreement=reference["agreement"],
        reference_softmax_l2=reference["softmax_l2"],
        reference_eps_agreement=reference["eps_agreement"],
        reference_top1=reference["top1"],
    )
