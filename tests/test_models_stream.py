import pytest
import torch
from torch import nn

from ddl.compute.stream import MinibatchStream
from ddl.errors import ConfigError
from ddl.models import ModelError, build_model, last_linear_name


@pytest.mark.parametrize(
    "name,shape,layer,size",
    [
        ("mlp", (1, 28, 28), "fc3", (10, 30)),
        ("cnn", (1, 28, 28), "fc3", (10, 25)),
        ("cnn", (3, 32, 32), "fc3", (10, 25)),
        ("resnet18", (3, 32, 32), "fc", (10, 512)),
        ("densenet121", (3, 32, 32), "classifier", (10, 1024)),
    ],
)
def test_output_shapes_and_final_layer(name, shape, layer, size):
    m = build_model(name, shape, seed=0).eval()
    assert m(torch.randn(2, *shape)).shape == (2, 10)
    assert last_linear_name(m) == layer
    assert tuple(dict(m.named_modules())[layer].weight.shape) == size


def test_cifar_stems():
    r = build_model("resnet18", (3, 32, 32))
    assert r.conv1.kernel_size == (3, 3) and r.conv1.out_channels == 64 and isinstance(r.maxpool, nn.Identity)
    d = build_model("densenet121", (3, 32, 32))
    assert d.features.conv0.kernel_size == (3, 3) and isinstance(d.features.pool0, nn.Identity)


def test_mlp_options_and_init():
    m = build_model("mlp", (1, 28, 28), hidden=(20, 20, 20), bias=True, dropout=0.1, seed=0)
    assert [n for n, _ in m.named_children()] == ["flatten", "fc1", "relu1", "dropout1", "fc2", "relu2", "fc3",
                                                  "relu3", "fc4"]
    assert m.fc1.bias is not None
    a = build_model("mlp", (1, 28, 28), seed=1)
    b = build_model("mlp", (1, 28, 28), seed=1, init_scale=4.0)
    assert torch.allclose(b.fc1.weight, 4 * a.fc1.weight)
    x = build_model("mlp", (1, 28, 28), seed=1, init="xavier")
    bound = (6 / (784 + 30)) ** 0.5
    assert x.fc1.weight.abs().max() <= bound and not torch.allclose(x.fc1.weight, a.fc1.weight)
    with pytest.raises(ModelError, match="--model"):
        build_model("vgg", (1, 28, 28))


def test_stream_partitions_global_batch():
    s = MinibatchStream(1000, 4, 25, seed=3)
    big = MinibatchStream(1000, 1, 100, seed=3)
    assert s.steps_per_epoch == 10
    seen = []
    for step in range(s.steps_per_epoch):
        idx = s.indices(step, range(4))
        assert torch.equal(idx.flatten(), big.indices(step, [0])[0])
        assert torch.equal(idx[2:], s.indices(step, [2, 3]))  # any worker computes its own block alone
        seen.append(idx.flatten())
    assert torch.unique(torch.cat(seen)).numel() == 1000  # one epoch = each sample once
    assert not torch.equal(s.indices(0, [0]), s.indices(10, [0]))  # new permutation next epoch
    with pytest.raises(ConfigError, match="--batch-size"):
        MinibatchStream(50, 4, 25, seed=0)
