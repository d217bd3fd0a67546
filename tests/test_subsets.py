"""Every subset the project takes (evaluation, analysis test set, noise samples) is a seeded, stratified sample."""

import pytest
import torch

from ddl.data import stratified_subset
from ddl.data.subsets import class_quotas, proportional_quotas


def hist(y, idx, classes=10):
    return torch.bincount(y[idx], minlength=classes).tolist()


def test_class_quotas_equal_shares_and_water_filling():
    assert class_quotas([100] * 10, 1000) == [100] * 10
    assert class_quotas([100] * 10, 30) == [3] * 10
    # 35 over 10 equal classes: 3 each, the 5 left to the lowest class indices (all equally large)
    assert class_quotas([100] * 10, 35) == [4] * 5 + [3] * 5
    # a small class gives all it has, the rest is shared equally
    assert class_quotas([2, 100, 100], 32) == [2, 15, 15]
    assert class_quotas([2, 100, 0], 50) == [2, 48, 0]
    assert class_quotas([3, 4], 100) == [3, 4]


def test_stratified_subset_of_class_sorted_labels(mnist5k):
    y = torch.sort(mnist5k.y_train).values  # sorted by class: the first 1000 rows are classes 0-2 only
    assert hist(y, torch.arange(1000)) == [400, 400, 200] + [0] * 7
    idx = stratified_subset(y, 1000, seed=0)
    assert hist(y, idx) == [100] * 10
    assert idx.unique().numel() == 1000 and torch.equal(idx, torch.sort(idx).values)
    assert hist(y, stratified_subset(y, 25, seed=1)) == [3] * 5 + [2] * 5


def test_stratified_subset_seeded_own_generator_and_purposes():
    y = torch.arange(500) % 10
    before = torch.random.get_rng_state()
    a = stratified_subset(y, 50, seed=3, purpose="eval-train")
    assert torch.equal(torch.random.get_rng_state(), before)  # the global (training) stream is untouched
    assert torch.equal(a, stratified_subset(y, 50, seed=3, purpose="eval-train"))
    assert not torch.equal(a, stratified_subset(y, 50, seed=4, purpose="eval-train"))
    assert not torch.equal(a, stratified_subset(y, 50, seed=3, purpose="noise"))
    assert torch.equal(stratified_subset(y, None, 0), torch.arange(500))
    assert torch.equal(stratified_subset(y, 10_000, 0), torch.arange(500))


def test_trainer_eval_subsets_are_stratified(small_cfg):
    from ddl.loop.train import Trainer

    tr = Trainer(small_cfg(eval_samples=50))  # 40 train / 20 test per class, stored sorted by class
    assert hist(tr.y_train.cpu(), tr.eval_train.cpu()) == [5] * 10
    assert hist(tr.y_test.cpu(), tr.eval_test.cpu()) == [5] * 10
    # the test subset is the same for every seed (runs compare on it); the train subset follows the run's seed
    other = Trainer(small_cfg(eval_samples=50, seed=1, name="other"))
    assert torch.equal(tr.eval_test, other.eval_test)
    assert Trainer(small_cfg(name="all")).eval_train is None


def test_analysis_test_set_is_stratified(mnist5k):
    from ddl.commands.analyze import analysis_test_set

    x, y = analysis_test_set(mnist5k.x_test, mnist5k.y_test, 100)
    assert torch.bincount(y, minlength=10).tolist() == [10] * 10
    assert torch.bincount(mnist5k.y_test[:100], minlength=10).tolist()[0] == 100  # what [:100] would have given
    x_all, y_all = analysis_test_set(mnist5k.x_test, mnist5k.y_test, None)
    assert torch.equal(y_all, mnist5k.y_test)


def test_proportional_quotas_by_largest_remainder():
    assert proportional_quotas([100] * 10, 35) == class_quotas([100] * 10, 35)  # balanced: the two modes agree
    assert proportional_quotas([900, 100], 10) == [9, 1]
    assert proportional_quotas([5, 3, 2], 5) == [3, 1, 1]  # exact 2.5, 1.5, 1.0: remainders to the two largest
    assert proportional_quotas([3, 4], 100) == [3, 4]
    assert proportional_quotas([0, 10], 3) == [0, 3]
    for counts, k in (([7, 1, 13, 40], 17), ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], 1000)):
        q = proportional_quotas(counts, k)
        assert sum(q) == k and all(abs(qc - k * c / sum(counts)) < 1 for qc, c in zip(q, counts))


def test_stratified_subset_on_imbalanced_labels_is_proportional_by_default():
    """On imbalanced labels (9:1, and full MNIST's class sizes) the default subset keeps the class shares, so its
    mean loss estimates the whole set's; ``equal`` takes equal counts (a class-balanced estimate)."""
    y = torch.tensor([0] * 900 + [1] * 100)
    prop = stratified_subset(y, 100, seed=0, purpose="eval-train")
    assert hist(y, prop)[:2] == [90, 10]
    assert hist(y, stratified_subset(y, 100, seed=0, purpose="eval-train", mode="equal"))[:2] == [50, 50]
    # a seeded sample: the same seed gives the same subset, another seed another one within each class
    assert torch.equal(prop, stratified_subset(y, 100, seed=0, purpose="eval-train"))
    assert not torch.equal(prop, stratified_subset(y, 100, seed=1, purpose="eval-train"))
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # MNIST's training classes
    y = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    h = hist(y, stratified_subset(y, 1000, seed=0))
    assert h == proportional_quotas(counts, 1000) and h[1] == 112 and h[5] == 90
    with pytest.raises(ValueError, match="stratify"):
        stratified_subset(y, 10, 0, mode="balanced")
