"""The in-memory data set and the single loader entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ddl.data import sources
from ddl.data.labels import add_label_noise, per_class_subset
from ddl.errors import ConfigError


class DataError(ConfigError):
    """Bad data request: the message is one line naming the flag and what it accepts."""


@dataclass
class Dataset:
    """Train and test tensors plus which training labels are correct.

    ``clean_mask[i]`` is True when ``y_train[i]`` is the sample's true label (always True without label noise);
    ``y_train_true`` keeps the true labels of every training sample.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    clean_mask: torch.Tensor
    y_train_true: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def clean_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The correctly labelled training samples (what the paper's L_train and Hessian use)."""
        return self.x_train[self.clean_mask], self.y_train[self.clean_mask]


DATASETS = ("mnist5k", "mnist", "fashion-mnist", "cifar10")
INPUT_SHAPES = {"mnist5k": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

DEFAULT_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}


def _check_per_class(flag: str, what: str, y: torch.Tensor, per_class: int, name: str) -> None:
    avail = int(torch.bincount(y, minlength=10).min())
    if per_class > avail:
        raise DataError(f"{flag}: {per_class} {what} samples per class exceed the {avail} per class that {name} has")


def load_dataset(
    name: str = "mnist5k",
    data_dir: str | Path | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Load ``name`` and apply the per-class subset and label noise, deterministically in ``seed``.

    ``train_per_class`` counts *correctly labelled* samples; with label noise ρ the training set is enlarged
    by 1/(1−ρ) with extra samples of the same pool that get a wrong label (docs/theory.md §9), so the clean count
    stays fixed.  ``mnist5k`` defaults to 400 train / 100 test per class.
    """
    if name not in DATASETS:
        raise DataError(f"--dataset: unknown data set {name!r}; accepted: {', '.join(DATASETS)}")
    if not 0.0 <= label_noise < 1.0:
        raise DataError(f"--label-noise: must be in [0, 1), got {label_noise}")
    if name == "mnist5k":
        x, y = sources.mnist5k()
        test_per_class = 100 if test_per_class is None else test_per_class
        train_per_class = 400 if train_per_class is None else train_per_class
        _check_per_class("--test-per-class", "test", y, test_per_class, name)
        # The embedded file has no official split: a seeded per-class split that does not depend on `seed`
        # (the test set must be the same for every run that is compared).
        x_te, y_te, x_tr, y_tr = per_class_subset(x, y, test_per_class, seed=12345, return_rest=True)
    else:
        directory = data_dir or DEFAULT_DIRS.get(name)
        if directory is None:
            raise DataError(f"--data-dir: required for --dataset {name} (a directory holding its files)")
        try:
            x_tr, y_tr, x_te, y_te = sources.from_directory(name, Path(directory))
        except (OSError, ValueError) as e:  # missing, unreadable or wrong-format files
            raise DataError(f"--data-dir: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if test_per_class is not None:
            _check_per_class("--test-per-class", "test", y_te, test_per_class, name)
            x_te, y_te = per_class_subset(x_te, y_te, test_per_class, seed=12345)
    num_classes = 10
    n_clean = train_per_class
    n_extra = 0
    if label_noise > 0:
        if n_clean is None:
            n_clean = int(torch.bincount(y_tr, minlength=num_classes).min())
            n_clean = int(n_clean * (1 - label_noise))
        n_extra = round(n_clean / (1 - label_noise)) - n_clean
    if n_clean is not None:
        avail = int(torch.bincount(y_tr, minlength=num_classes).min())
        if n_clean + n_extra > avail:
            raise DataError(
                f"--train-per-class: {n_clean} clean + {n_extra} mislabelled per class exceeds the {avail} "
                f"training samples per class that {name} has"
            )
        x_tr, y_tr = per_class_subset(x_tr, y_tr, n_clean + n_extra, seed=seed)
    y_true = y_tr.clone()
    if label_noise > 0:
        y_tr, clean = add_label_noise(y_tr, n_extra, num_classes, seed=seed)
    else:
        clean = torch.ones_like(y_tr, dtype=torch.bool)
    return Dataset(name, x_tr, y_tr, x_te, y_te, clean, y_true, num_classes)
