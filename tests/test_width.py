"""``--width``: ResNet-18 base channels / DenseNet-121 growth rate change channel counts only; the final layer is
found by name; ``ddl analyze`` picks it without ``--layer``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from ddl.config import TrainConfig
from ddl.errors import ConfigError
from ddl.models import PAPER_WIDTHS, build_model, final_layer_name

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def _torchvision_cifar_resnet18(in_ch: int) -> nn.Module:
    """The previous construction: torchvision's ResNet-18 with the 3×3 stem swapped in."""
    m = tvm.resnet18(weights=None, num_classes=10)
    m.conv1 = nn.Conv2d(in_ch, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


@pytest.mark.parametrize("in_ch", [1, 3])
def test_resnet18_paper_width_is_torchvisions_model_exactly(in_ch):
    torch.manual_seed(7)
    ref = _torchvision_cifar_resnet18(in_ch).state_dict()
    got = build_model("resnet18", (in_ch, 28, 28), seed=7).state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)  # same seed, same initial weights


def test_densenet121_paper_width_is_torchvisions_architecture():
    ref = tvm.densenet121(weights=None, num_classes=10)
    got = build_model("densenet121", (3, 32, 32))
    shapes = {k: v.shape for k, v in got.state_dict().items()}
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items()}
    ref_shapes["features.conv0.weight"] = torch.Size([64, 3, 3, 3])  # the CIFAR stem
    assert shapes == ref_shapes
    assert sum(p.numel() for p in got.parameters()) == sum(p.numel() for p in ref.parameters()) - 64 * 3 * (49 - 9)


@pytest.mark.parametrize("name,channels", [("resnet18", ("conv1.weight", "layer4.1.conv2.weight", "fc.weight")),
                                          ("densenet121", ("features.conv0.weight",
                                                           "features.denseblock4.denselayer16.conv2.weight",
                                                           "classifier.weight"))])  # fmt: skip
def test_width_changes_channels_not_depth_or_names(name, channels):
    paper = build_model(name, (1, 28, 28))
    small = build_model(name, (1, 28, 28), width=4)
    assert [n for n, _ in small.named_modules()] == [n for n, _ in paper.named_modules()]
    assert [type(m) for m in small.modules()] == [type(m) for m in paper.modules()]
    ps, pp = dict(small.named_parameters()), dict(paper.named_parameters())
    scale = PAPER_WIDTHS[name] // 4
    first, mid, last = channels
    assert ps[first].shape[0] * scale == pp[first].shape[0]
    assert ps[mid].shape[0] * scale == pp[mid].shape[0]
    assert ps[last].shape == (10, pp[last].shape[1] // scale)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # the 28 × 28 grayscale stem


@pytest.mark.parametrize("name,layer", [("mlp", "fc3"), ("cnn", "fc3"), ("resnet18", "fc"),
                                        ("densenet121", "classifier")])  # fmt: skip
def test_final_layer_is_named_and_is_the_output(name, layer):
    model = build_model(name, (1, 28, 28), seed=0, **({"width": 4} if name in PAPER_WIDTHS else {})).eval()
    assert final_layer_name(model) == layer
    out = {}
    model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("z", o))
    y = model(torch.randn(3, 1, 28, 28))
    assert torch.equal(out["z"], y)  # nothing after it: the network's logits are its output


def test_width_in_config_defaults_to_the_papers_and_rejects_other_models():
    assert TrainConfig(model="resnet18").validate().width == 64
    assert TrainConfig(model="densenet121").validate().width == 32
    assert TrainConfig(model="resnet18", width=16).validate().to_dict()["width"] == 16
    assert TrainConfig(model="mlp").validate().width is None
    with pytest.raises(ConfigError, match="^--width: only resnet18 and densenet121"):
        TrainConfig(model="mlp", width=8).validate()
    with pytest.raises(ConfigError, match="^--width: must be"):
        TrainConfig(model="resnet18", width=0).validate()


def test_analyze_picks_the_final_layer_without_layer_flag(tmp_path):
    """A ResNet-18 (width 4) run directory: ``analyze_run`` with no layer decomposes ``fc``."""
    from ddl.commands.analyze import analyze_run
    from ddl.rundir.layout import save_torch, write_json

    cfg = TrainConfig(model="resnet18", width=4, dataset="mnist5k", train_per_class=10, test_per_class=5,
                      progress=False, out=str(tmp_path)).validate()  # fmt: skip
    write_json(tmp_path / "config.json", cfg.to_dict())
    write_json(tmp_path / "summary.json", {"status": "max_epochs", "steps": 0})
    save_torch(tmp_path / "checkpoints" / "averaged.pt", build_model("resnet18", (1, 28, 28), width=4,
                                                                       seed=0).state_dict())
    res = analyze_run(tmp_path, test_samples=20, progress=False, verbose=False)
    assert res.layer == "fc" and res.n_params == 32 * 10
