"""Test-train pairs: the nearest training samples of the same label (docs/theory.md §2).

Distances are Euclidean between flattened feature vectors (the model inputs, or the analysed layer's inputs).
Squared distances come from the fast matrix-product form ``‖t‖² − 2 q·t`` (+ the per-row constant ``‖q‖²``),
the few closest candidates are then re-ranked by directly recomputed distances ``Σ(q − t)²`` (the
matrix-product form loses digits when distances are small compared with the norms), and ties go to the
lower training index.

Two equivalent schedules: when the labels' groups, padded to the largest, fit in ``max_elements`` entries,
all labels are done at once with batched products (few large operations); otherwise one label at a time, a
chunk of test rows at a time, so that at most ``max_elements`` distances exist at once (10k × 50k pairs
never need a 10k × 50k matrix).
"""

from __future__ import annotations

import torch

from analysis.errors import AnalysisError

_EXTRA_CANDIDATES = 4


def nearest_same_label(
    test_feats: torch.Tensor,
    test_y: torch.Tensor,
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    k: int = 1,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """Indices into the training set, ``[N_test, k]``: row n holds test sample n's k nearest same-label
    training samples, closest first."""
    if k < 1:
        raise AnalysisError(f"--k: the number of training partners must be ≥ 1, got {k}")
    te = test_feats.reshape(test_feats.shape[0], -1)
    tr = train_feats.reshape(train_feats.shape[0], -1)
    if te.shape[1] != tr.shape[1]:
        raise AnalysisError(f"test: samples have {te.shape[1]} features, training samples {tr.shape[1]}")
    if not te.is_floating_point():
        te, tr = te.double(), tr.double()
    test_y, train_y = test_y.to(te.device), train_y.to(te.device)
    te_order = torch.argsort(test_y, stable=True)
    tr_order = torch.argsort(train_y, stable=True)  # stable: within a label, ascending training index
    labels, te_counts = torch.unique_consecutive(test_y[te_order], return_counts=True)
    tr_labels, tr_counts = torch.unique_consecutive(train_y[tr_order], return_counts=True)
    tr_start = dict(zip(tr_labels.tolist(), (torch.cumsum(tr_counts, 0) - tr_counts).tolist()))
    tr_count = dict(zip(tr_labels.tolist(), tr_counts.tolist()))
    groups = []  # (test indices, training indices) per label
    te_start = 0
    for c, n_te in zip(labels.tolist(), te_counts.tolist()):
        n_tr = tr_count.get(c, 0)
        if n_tr == 0:
            raise AnalysisError(f"test: label {c} has no training sample of the same label to pair with")
        if n_tr < k:
            raise AnalysisError(f"--k: label {c} has {n_tr} training samples, fewer than the {k} partners asked for")
        groups.append((te_order[te_start : te_start + n_te], tr_order[tr_start[c] : tr_start[c] + n_tr]))
        te_start += n_te
    out = torch.empty(te.shape[0], k, dtype=torch.long, device=te.device)
    n_groups = len(groups)
    max_te = max(g[0].numel() for g in groups)
    max_tr = max(g[1].numel() for g in groups)
    n_cand = min(k + _EXTRA_CANDIDATES, max_tr)
    padded = n_groups * max(max_te * max_tr, max_tr * tr.shape[1], max_te * n_cand * tr.shape[1])
    if padded <= max_elements and max_tr * n_groups <= 2 * tr.shape[0]:
        _batched(te, tr, groups, k, out)
    else:
        for te_idx, tr_idx in groups:
            _one_label(te, tr, te_idx, tr_idx, k, max_elements, out)
    return out


def _rank(q: torch.Tensor, cand_feats: torch.Tensor, cand: torch.Tensor, invalid: torch.Tensor | None, k: int):
    """Positions (into ``cand``) of the k nearest candidates by direct distances, ties to the lower index."""
    rd = torch.promote_types(q.dtype, torch.float32)
    exact = (q.unsqueeze(-2).to(rd) - cand_feats.to(rd)).pow(2).sum(-1)
    if invalid is not None:
        exact = exact.masked_fill(invalid, float("inf"))
    cand, order = cand.sort(dim=-1)  # candidates by index, then a stable sort by distance
    exact = exact.gather(-1, order)
    best = exact.sort(dim=-1, stable=True).indices[..., :k]
    return cand.gather(-1, best)


def _one_label(te, tr, te_idx, tr_idx, k, max_elements, out) -> None:
    n_tr = tr_idx.numel()
    trc = tr[tr_idx]
    tr_sq = trc.pow(2).sum(1)
    n_cand = min(k + _EXTRA_CANDIDATES, n_tr)
    rows = max(1, min(max_elements // n_tr, max_elements // (n_cand * tr.shape[1])))
    for s in range(0, te_idx.numel(), rows):
        rows_idx = te_idx[s : s + rows]
        q = te[rows_idx]
        cand = torch.addmm(tr_sq, q, trc.T, alpha=-2.0).topk(n_cand, dim=1, largest=False).indices
        out[rows_idx] = tr_idx[_rank(q, trc[cand], cand, None, k)]


def _batched(te, tr, groups, k, out) -> None:
    """All labels at once: groups padded to the largest, padded training slots at infinite distance."""
    n_groups = len(groups)
    max_te = max(g[0].numel() for g in groups)
    max_tr = max(g[1].numel() for g in groups)
    TE = torch.zeros(n_groups, max_te, dtype=torch.long, device=te.device)
    TR = torch.zeros(n_groups, max_tr, dtype=torch.long, device=te.device)
    te_ok = torch.zeros(n_groups, max_te, dtype=torch.bool, device=te.device)
    tr_ok = torch.zeros(n_groups, max_tr, dtype=torch.bool, device=te.device)
    for i, (te_idx, tr_idx) in enumerate(groups):
        TE[i, : te_idx.numel()], te_ok[i, : te_idx.numel()] = te_idx, True
        TR[i, : tr_idx.numel()], tr_ok[i, : tr_idx.numel()] = tr_idx, True
    Q, T = te[TE], tr[TR]  # [G, max_te, D], [G, max_tr, D]
    t_sq = T.pow(2).sum(-1).masked_fill_(~tr_ok, float("inf"))
    d2 = torch.baddbmm(t_sq[:, None, :], Q, T.transpose(1, 2), alpha=-2.0)
    n_cand = min(k + _EXTRA_CANDIDATES, max_tr)
    cand = d2.topk(n_cand, dim=2, largest=False).indices  # [G, max_te, n_cand]
    rows = torch.arange(n_groups, device=te.device)[:, None, None]
    best = _rank(Q, T[rows, cand], cand, ~tr_ok[rows, cand], k)
    out[TE[te_ok]] = TR[rows, best][te_ok]
