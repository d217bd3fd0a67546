"""The sharp/flat split rules, the reference code's top-σ_g rule included, on hand-made spectra."""

import dataclasses

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.result import DualityResult
from analysis.stats import sharp_mask, split_sharp_flat


def test_top_rule_takes_largest_sigma_g_wherever_they_are():
    lam = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    sg = np.array([0.5, 0.9, 0.1, 0.8, 0.7, 0.8])
    # the two largest σ_g: 0.9 (k=1), then 0.8 at k=3 and k=5 - the tie goes to the larger eigenvalue (k=3)
    assert sharp_mask(lam, sg, "top", 2).tolist() == [False, True, False, True, False, False]
    assert split_sharp_flat(lam, sg, "top", 2) == 2
    assert sharp_mask(lam, sg, "top").sum() == 6  # default 10, capped at K
    # on the eigenvalue spectrum it is the count rule
    assert sharp_mask(lam, sg, "top", 3, by="eigenvalue").tolist() == sharp_mask(lam, sg, "count", 3).tolist()
    assert sharp_mask(lam, sg, "count", 3).tolist() == [True] * 3 + [False] * 3
    with pytest.raises(AnalysisError, match="top rule needs a whole number"):
        sharp_mask(lam, sg, "top", 2.5)


def test_with_split_top_sums_the_chosen_directions():
    K = 6
    c = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    res = DualityResult(
        eigenvalues=np.linspace(6, 1, K), sigma_g=np.array([0.5, 0.9, 0.1, 0.8, 0.7, 0.2]), sigma_w=np.ones(K),
        rho=np.ones(K), mean_g=np.zeros(K), mean_w=np.zeros(K), contributions=c, mean_terms=np.zeros(K),
        pairwise_gap=float(c.sum()) + 0.5, true_gap=0.3, sharp_gap=0.0, flat_gap=0.0, n_sharp=0,
        residual_gap=0.5,
    )
    top = res.with_split("top", 3)
    assert (top.split_rule, top.split_value, top.split_by) == ("top", 3, "sigma_g")
    assert top.n_sharp == 3
    assert top.sharp_gap == pytest.approx(0.02 + 0.04 + 0.05)
    assert top.flat_gap == pytest.approx(0.01 + 0.03 + 0.06 + 0.5)
    assert top.sharp_gap + top.flat_gap + top.mean_gap == pytest.approx(res.pairwise_gap)
    assert top.sharp_mask().tolist() == [False, True, False, True, True, False]
    lead = res.with_split("count", 3)
    assert lead.sharp_gap == pytest.approx(0.06) and lead.sharp_mask().tolist() == [True] * 3 + [False] * 3
    # the rule travels with the result's scalars (and so into duality.json and the report)
    sc = top.scalars()
    assert sc["split_rule"] == "top" and sc["split_by"] == "sigma_g" and sc["split_value"] == 3
    assert dataclasses.replace(top).sharp_mask().sum() == 3


def test_decompose_with_top_rule_records_it():
    import torch
    from torch import nn

    from analysis import decompose

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False)).double()
    x_tr, y_tr = torch.randn(60, 6, generator=g, dtype=torch.float64), torch.arange(60) % 3
    x_te, y_te = torch.randn(30, 6, generator=g, dtype=torch.float64), torch.arange(30) % 3
    res = decompose(model, "2", train=(x_tr, y_tr), test=(x_te, y_te), split="top", split_value=4)
    mask = np.zeros(res.n_directions, dtype=bool)
    mask[np.argsort(-res.sigma_g, kind="stable")[:4]] = True
    assert (res.split_rule, res.split_by, res.split_value, res.n_sharp) == ("top", "sigma_g", 4, 4)
    assert res.sharp_gap == pytest.approx(res.contributions[mask].sum(), abs=1e-15)
    assert res.sharp_gap + res.flat_gap + res.mean_gap == pytest.approx(res.pairwise_gap, abs=1e-12)
    assert "top on sigma_g" in res.summary()


def test_contributions_figure_marks_non_leading_sharp_directions():
    from analysis.figures import plot_contributions

    K = 8
    res = DualityResult(
        eigenvalues=np.linspace(8, 1, K), sigma_g=np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.1, 0.1, 0.1]),
        sigma_w=np.ones(K), rho=np.ones(K), mean_g=np.zeros(K), mean_w=np.zeros(K),
        contributions=np.linspace(0.01, 0.08, K), mean_terms=np.zeros(K), pairwise_gap=0.36, true_gap=0.3,
        sharp_gap=0.0, flat_gap=0.0, n_sharp=0,
    )
    top = plot_contributions(res.with_split("top", 3))
    rings = [c for c in top.axes[0].collections if len(c.get_offsets()) == 3]
    assert len(rings) == 1 and sorted(rings[0].get_offsets()[:, 0].tolist()) == [1, 3, 5]  # 1-based k
    lead = plot_contributions(res.with_split("count", 3))
    assert not lead.axes[0].collections and any(ln.get_xdata()[0] == 3.5 for ln in lead.axes[0].lines[1:])
