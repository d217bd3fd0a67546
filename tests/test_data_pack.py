"""``ddl data pack``: a data set's files copied into a folder that ``--data-dir`` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_data import _write_mnist_like

from ddl.commands.cli import main
from ddl.data import DataError, load_dataset
from ddl.data.pack import pack

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_pack_raw_idx_gzips_them_and_data_dir_reads_the_same(tmp_path, capsys):
    _write_mnist_like(tmp_path / "src", gz=False, seed=2)
    assert main(["data", "pack", "--dataset", "mnist", "--from", str(tmp_path / "src"), "--to",
                 str(tmp_path / "out")]) == 0  # fmt: skip
    assert "--data-dir" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{s}.gz" for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"))  # fmt: skip
    a, b = load_dataset("mnist", data_dir=tmp_path / "src"), load_dataset("mnist", data_dir=tmp_path / "out")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_pack_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="^--from: mnist not found"):
        pack("mnist", tmp_path / "out", tmp_path / "nowhere")
    with pytest.raises(DataError, match="^--dataset: only"):
        pack("cifar10", tmp_path / "out")
    bad = tmp_path / "bad"
    _write_mnist_like(bad, gz=True)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="^--from: the mnist files in .* do not load: .*not an IDX file"):
        pack("mnist", tmp_path / "out2", bad)


def test_pack_installed_fashion_mnist(tmp_path):
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian dataset-fashion-mnist not installed (make test installs it)")
    written = pack("fashion-mnist", tmp_path / "fm")
    assert sum(p.stat().st_size for p in written) < 64 * 2**20
    d = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", train_per_class=5)
    assert d.x_test.shape == (10000, 1, 28, 28) and torch.bincount(d.y_train).tolist() == [5] * 10
