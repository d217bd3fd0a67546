"""``--bn-recalibrate``: w̄'s BatchNorm statistics recomputed on a training sample (as swa_utils.update_bn),
checked against a hand loop of per-channel batch means/variances; the trajectory is untouched; a model without
BatchNorm gives identical numbers either way."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ddl.compute.batchnorm import has_batchnorm, recalibrate_bn
from ddl.loop.train import train
from ddl.models import build_model

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def _hand_statistics(model: nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per BatchNorm layer: the mean over complete batches of the per-channel batch mean and unbiased variance
    of the layer's input, captured by hooks on a train-mode forward (whose outputs do not depend on the running
    statistics)."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            def hook(mod, inp, name=name):
                seen.setdefault(name, []).append(inp[0].detach().clone())
            hooks.append(m.register_forward_pre_hook(hook))
    model.train()
    with torch.no_grad():
        for i in range(x.shape[0] // batch_size):
            model(x[i * batch_size : (i + 1) * batch_size])
    for h in hooks:
        h.remove()
    out = {}
    for name, inputs in seen.items():
        means = [a.transpose(0, 1).reshape(a.shape[1], -1).mean(1) for a in inputs]
        varis = [a.transpose(0, 1).reshape(a.shape[1], -1).var(1, unbiased=True) for a in inputs]
        out[name] = (torch.stack(means).mean(0), torch.stack(varis).mean(0))
    return out


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_recalibrated_statistics_equal_a_hand_loop(name):
    torch.manual_seed(0)
    model = build_model(name, (1, 28, 28), width=2, seed=3).double()
    x = torch.randn(22, 1, 28, 28, dtype=torch.float64) * 2 + 0.5  # 22 = 3 complete batches of 7, one row left
    for m in model.modules():  # junk statistics that must not survive
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    ref = _hand_statistics(build_model(name, (1, 28, 28), width=2, seed=3).double(), x, 7)
    rng = torch.get_rng_state()
    assert recalibrate_bn(model, x, 7) == 3
    assert torch.equal(torch.get_rng_state(), rng)  # no random stream consumed
    assert not model.training
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert set(bns) == set(ref) and len(bns) > 10
    for n, m in bns.items():
        torch.testing.assert_close(m.running_mean, ref[n][0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(m.running_var, ref[n][1], rtol=1e-10, atol=1e-12)
        assert m.momentum == 0.1  # restored


def test_a_model_without_batchnorm_is_untouched():
    model = build_model("mlp", (1, 28, 28), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not has_batchnorm(model)
    assert recalibrate_bn(model, torch.randn(8, 1, 28, 28), 4) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _run(small_cfg, name, **kw):
    res = train(small_cfg(name=name, **kw))
    metrics = [json.loads(line) for line in (res.out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((res.out / "summary.json").read_text())
    return res.out, metrics, summary


def test_mlp_numbers_identical_on_and_off(small_cfg):
    _, m_on, s_on = _run(small_cfg, "on", bn_recalibrate="on", learners=2, batch_size=10)
    _, m_off, s_off = _run(small_cfg, "off", bn_recalibrate="off", learners=2, batch_size=10)
    drop = ("time", "sim_time_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in m_on] == \
        [{k: v for k, v in r.items() if k not in drop} for r in m_off]
    assert s_on["batchnorm"] is None and s_off["batchnorm"] is None
    assert not any(k.endswith("_avg_bn") for k in m_on[-1])


def test_resnet_run_records_both_and_saves_the_recalibrated_model(small_cfg):
    kw = dict(model="resnet18", width=2, learners=2, batch_size=4, algo="dpsgd", train_per_class=4,
              test_per_class=2, momentum=0.9, lr=0.05, clock=False, bn_samples=24)
    out_on, m_on, s_on = _run(small_cfg, "on", bn_recalibrate="on", **kw)
    out_off, m_off, s_off = _run(small_cfg, "off", bn_recalibrate="off", **kw)
    # the trajectory is the same: recalibration only changes what w̄ is evaluated and saved with
    l_on = torch.load(out_on / "checkpoints" / "learners.pt")
    l_off = torch.load(out_off / "checkpoints" / "learners.pt")
    assert torch.equal(l_on["weights"], l_off["weights"])
    assert all(torch.equal(l_on["buffers"][k], l_off["buffers"][k]) for k in l_on["buffers"])
    # the averaged-statistics numbers of the recalibrated run are the numbers of the run without recalibration
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert m_on[-1][f"{key}_avg_bn"] == pytest.approx(m_off[-1][key], rel=1e-6, abs=1e-9)
    assert "test_acc_avg_bn" not in m_off[-1]
    assert s_on["batchnorm"] == {"statistics": "recalibrated", "samples": 24, "batch_size": 4, "batches": 6}
    assert s_off["batchnorm"] == {"statistics": "averaged"}
    assert json.loads((out_on / "config.json").read_text())["bn_recalibrate"] == "on"
    # averaged.pt holds w̄ with the recalibrated statistics, not the averaged ones
    avg_on = torch.load(out_on / "checkpoints" / "averaged.pt")
    avg_off = torch.load(out_off / "checkpoints" / "averaged.pt")
    assert torch.equal(avg_on["fc.weight"], avg_off["fc.weight"])
    assert not torch.allclose(avg_on["bn1.running_var"], avg_off["bn1.running_var"])
