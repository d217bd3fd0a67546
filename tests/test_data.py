"""Data: the embedded split, subsets, label noise and the on-disk loaders on tiny files in the real formats."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from ddl.data import DataError, augment_cifar, load_dataset


def test_mnist5k_default_split(mnist5k):
    d = mnist5k
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(d.y_train).tolist() == [400] * 10
    assert torch.bincount(d.y_test).tolist() == [100] * 10
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0 and d.x_train.max() > 0.9
    # train and test are disjoint samples
    tr = {hash(x.numpy().tobytes()) for x in d.x_train}
    assert not any(hash(x.numpy().tobytes()) in tr for x in d.x_test)


def test_split_is_deterministic_and_test_set_seed_independent():
    a, b = load_dataset("mnist5k", train_per_class=100, seed=3), load_dataset("mnist5k", train_per_class=100, seed=3)
    c = load_dataset("mnist5k", train_per_class=100, seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, c.x_test)
    assert torch.bincount(a.y_train).tolist() == [100] * 10


@pytest.mark.parametrize("rho", [0.091, 0.2])
def test_label_noise_counts(rho):
    d = load_dataset("mnist5k", train_per_class=200, label_noise=rho, seed=1)
    n_clean = 200 * 10
    n_total = 10 * round(200 / (1 - rho))
    assert d.n_train == n_total
    assert int(d.clean_mask.sum()) == n_clean
    noisy = ~d.clean_mask
    assert bool((d.y_train[noisy] != d.y_train_true[noisy]).all())
    assert bool((d.y_train[d.clean_mask] == d.y_train_true[d.clean_mask]).all())
    x, y = d.clean_train()
    assert torch.bincount(y).tolist() == [200] * 10


def test_bad_requests_are_one_line_errors():
    with pytest.raises(DataError, match="--dataset"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="--train-per-class"):
        load_dataset("mnist5k", train_per_class=450)
    with pytest.raises(DataError, match="--label-noise"):
        load_dataset("mnist5k", label_noise=1.0)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10", data_dir="/nonexistent")


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.tobytes()


def _write_mnist_like(directory, n_train=30, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


def test_mnist_from_torchvision_layout(tmp_path):
    arrays = _write_mnist_like(tmp_path / "MNIST" / "raw")
    d = load_dataset("mnist", data_dir=tmp_path)
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    expect = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.allclose(d.x_train[:, 0], expect)
    assert d.y_test.tolist() == (np.arange(20) % 10).tolist()
    sub = load_dataset("mnist", data_dir=tmp_path, train_per_class=2)
    assert torch.bincount(sub.y_train).tolist() == [2] * 10


def test_fashion_mnist_from_gzipped_idx_directory(tmp_path):
    arrays = _write_mnist_like(tmp_path, gz=True, seed=1)
    d = load_dataset("fashion-mnist", data_dir=tmp_path)
    expect = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.allclose(d.x_test[:, 0], expect)


def test_fashion_mnist_default_directory_if_installed():
    from pathlib import Path

    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    d = load_dataset("fashion-mnist", train_per_class=50)
    assert d.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.y_train).tolist() == [50] * 10


def test_cifar10_from_python_batches(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        batches[name] = data
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": list(range(10))}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    d = load_dataset("cifar10", data_dir=tmp_path)
    assert d.x_train.shape == (50, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    from ddl.data.sources import CIFAR_MEAN, CIFAR_STD

    raw = batches["test_batch"][3].reshape(3, 32, 32).astype(np.float32) / 255
    expect = (torch.from_numpy(raw) - torch.tensor(CIFAR_MEAN)[:, None, None]) / torch.tensor(CIFAR_STD)[:, None, None]
    assert torch.allclose(d.x_test[3], expect, atol=1e-6)


def test_augment_crop_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = augment_cifar(x, g, pad=0)  # no padding: only flips
    for i in range(2):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))
    y = augment_cifar(x, torch.Generator().manual_seed(1), pad=2)
    assert y.shape == x.shape
    # same generator seed, same augmentation
    y1 = augment_cifar(x, torch.Generator().manual_seed(5))
    assert torch.equal(y1, augment_cifar(x, torch.Generator().manual_seed(5)))
