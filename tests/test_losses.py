"""Each loss against values computed by hand for small tensors; mixup's soft targets reach a loss
that takes them (cross_entropy runs as soft_target_ce) and are refused for one that does not."""

from __future__ import annotations

import math

import pytest
import torch

from athanor.engine.build import validate
from athanor.errors import ConfigError
from athanor.losses import LOSSES, PENALTIES, build_loss
from conftest import FAST, compose

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
LABELS = torch.tensor([0, 2])


def softmax_row(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


P = [softmax_row(r) for r in LOGITS.tolist()]  # hand softmax, [2][3]


def loss(spec: dict, logits=LOGITS, targets=LABELS, **kw) -> float:
    return build_loss(spec, num_classes=3, **kw)(logits, targets).item()


def test_cross_entropy_with_smoothing_and_weights():
    ce = [-math.log(P[0][0]), -math.log(P[1][2])]
    assert loss({"name": "cross_entropy"}) == pytest.approx(sum(ce) / 2)
    eps = 0.1  # target (1 - eps) one-hot + eps / K
    smooth = [
        -sum(((1 - eps) * (k == y) + eps / 3) * math.log(P[i][k]) for k in range(3))
        for i, y in enumerate([0, 2])
    ]
    assert loss({"name": "cross_entropy", "label_smoothing": eps}) == pytest.approx(sum(smooth) / 2)
    w = [1.0, 2.0, 3.0]  # torch: weighted mean over the batch, sum(w_y * ce) / sum(w_y)
    want = (w[0] * ce[0] + w[2] * ce[1]) / (w[0] + w[2])
    assert loss({"name": "cross_entropy", "weight": w}) == pytest.approx(want)
    with pytest.raises(ConfigError, match="loss.weight has 2 entries but the data has 3 classes"):
        loss({"name": "cross_entropy", "weight": [1.0, 2.0]})


def test_soft_target_ce_by_hand_and_equal_to_torch():
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    want = -sum(soft[i, k].item() * math.log(P[i][k]) for i in range(2) for k in range(3)) / 2
    assert loss({"name": "soft_target_ce"}, targets=soft) == pytest.approx(want)
    for extra in ({}, {"label_smoothing": 0.1}, {"weight": [1.0, 0.5, 2.0]}):
        mine = loss({"name": "soft_target_ce", **extra}, targets=soft)
        torchs = loss({"name": "cross_entropy", **extra}, targets=soft)
        assert mine == pytest.approx(torchs, rel=1e-6), extra
    # class indices become one-hot
    assert loss({"name": "soft_target_ce"}) == pytest.approx(loss({"name": "cross_entropy"}))


def test_focal_by_hand():
    gamma, alpha = 2.0, [0.25, 1.0, 0.5]
    pt = [P[0][0], P[1][2]]
    want = [-alpha[y] * (1 - p) ** gamma * math.log(p) for p, y in zip(pt, [0, 2], strict=True)]
    assert loss({"name": "focal", "gamma": gamma, "alpha": alpha}) == pytest.approx(sum(want) / 2)
    # gamma 0, no alpha: plain cross-entropy; a scalar alpha scales it
    assert loss({"name": "focal", "gamma": 0.0}) == pytest.approx(loss({"name": "cross_entropy"}))
    assert loss({"name": "focal", "gamma": 0.0, "alpha": 0.5}) == pytest.approx(
        0.5 * loss({"name": "cross_entropy"})
    )


def test_bce_one_hot_from_class_indices_and_multi_label():
    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    def by_hand(targets: list[list[float]]) -> float:
        terms = [
            -(t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x)))
            for row, trow in zip(LOGITS.tolist(), targets, strict=True)
            for x, t in zip(row, trow, strict=True)
        ]
        return sum(terms) / len(terms)

    assert loss({"name": "bce"}) == pytest.approx(by_hand([[1, 0, 0], [0, 0, 1]]))
    multi = [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    assert loss({"name": "bce"}, targets=torch.tensor(multi)) == pytest.approx(by_hand(multi))
    with pytest.raises(ValueError, match=r"soft targets of shape \(2, 4\)"):
        loss({"name": "bce"}, targets=torch.zeros(2, 4))


def test_flooding_wraps_any_loss():
    base = loss({"name": "focal"})
    assert loss({"name": "focal", "flooding": base + 1.0}) == pytest.approx(base + 2.0)
    assert loss({"name": "focal", "flooding": base / 2}) == pytest.approx(base)


def test_mixup_switches_cross_entropy_to_soft_target_ce(caplog):
    with caplog.at_level("INFO"):
        module = build_loss(
            {"name": "cross_entropy", "label_smoothing": 0.1}, num_classes=3, soft_targets=True
        )
    assert type(module).__name__ == "SoftTargetCrossEntropy" and module.label_smoothing == 0.1
    assert "cross_entropy runs as soft_target_ce" in caplog.text
    terms = {"cross_entropy": {"weight": 1.0, "label_smoothing": 0.1}, "bce": 0.5}
    summed = build_loss({"name": "terms", "terms": terms}, num_classes=3, soft_targets=True)
    assert type(summed.terms["cross_entropy"]).__name__ == "SoftTargetCrossEntropy"
    assert list(summed.terms) == ["cross_entropy", "bce"]  # still logged under their own names


def test_mixup_with_a_loss_that_needs_class_indices_is_refused_before_training(train):
    with pytest.raises(ConfigError, match="loss=focal needs class indices"):
        validate(compose("loss=focal", "augment.mixup_alpha=0.2"))
    validate(compose("loss=bce", "augment.mixup_alpha=0.2"))  # sigmoid per class: soft is fine
    with pytest.raises(ConfigError, match="loss=focal needs class indices"):  # a term of a sum
        validate(
            compose(
                "loss=terms", "loss.terms={cross_entropy: 1, focal: 1}", "augment.mixup_alpha=0.2"
            )
        )
    result = train("loss=focal", "augment.cutmix_alpha=1.0", expect=2)
    assert "loss=focal needs class indices" in result.stderr and "Traceback" not in result.stderr


# the regression losses train with task=regression on float targets (tests/test_tasks.py)
REGRESSION = {"mse", "l1", "smooth_l1"}


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if n not in REGRESSION | PENALTIES])
def test_every_loss_trains_with_the_cli(train, name: str):
    mix = ["augment.mixup_alpha=0.2"] if name not in ("focal", "terms") else []  # terms: + focal
    terms = ["loss.terms={cross_entropy: 1.0, focal: 0.1}"] if name == "terms" else []
    train(
        *FAST,
        f"loss={name}",
        *terms,
        *mix,
        "data=fake",
        "data.num_train=64",
        "data.num_val=16",
        "model.hidden=[32]",
        "trainer.max_steps=2",
        "logger.tensorboard=false",
        "checkpoint.enabled=false",
    )


def test_l1_weights_is_the_l1_norm_of_the_weight_matrices_and_pulls_them_to_zero():
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    )
    summed = build_loss(
        {"name": "terms", "terms": {"cross_entropy": 1.0, "l1_weights": 0.5}},
        num_classes=2,
        model=model,
    )
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    total = summed(model(x), y)
    by_hand = model[0].weight.abs().sum() + model[2].weight.abs().sum()  # no biases, no BN scale
    assert summed.last["l1_weights"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert total.item() == pytest.approx(summed.last["cross_entropy"].item() + 0.5 * by_hand.item())
    total.backward()
    ce_only = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(ce_only, [model[0].weight, model[0].bias])
    # the penalty's gradient is 0.5 * sign(w) on each weight, nothing on the bias
    assert torch.allclose(model[0].weight.grad - grads[0], 0.5 * model[0].weight.sign(), atol=1e-6)
    assert torch.allclose(model[0].bias.grad, grads[1], atol=1e-6)
    assert not any(p is model[0].weight for p in summed.parameters())  # holds no model copy


def test_l1_weights_is_a_term_not_a_loss(train):
    with pytest.raises(ConfigError, match="penalty on the model's weights"):
        validate(compose("loss=l1_weights"))
    validate(compose("task=regression", "loss=terms", "loss.terms={mse: 1.0, l1_weights: 0.1}"))


def test_l1_weights_shrinks_the_trained_weights_and_is_logged_on_its_own(train):
    def run(*loss: str):
        r = train(*loss, "trainer.max_steps=40", "trainer.log_every=20", "logger.progress=plain")
        weights = torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True)
        l1 = sum(w.abs().sum().item() for w in weights["state"]["model"].values() if w.ndim > 1)
        return r, l1

    plain, l1_plain = run()
    penalized, l1_penalized = run(
        "loss=terms", "loss.terms={cross_entropy: 1.0, l1_weights: 1.0e-3}"
    )
    assert l1_penalized < 0.9 * l1_plain
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(penalized.run_dir / "tb"))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/loss/l1_weights")]
    assert len(logged) == 2 and logged[-1] < logged[0]  # the penalty falls as it trains


def test_loss_terms_replace_the_files_terms_and_none_is_a_clear_error(train):
    terms = compose("loss=terms", "loss.terms={cross_entropy: 1.0, l1_weights: 1.0e-5}")["loss"]
    assert terms["terms"] == {"cross_entropy": 1.0, "l1_weights": 1.0e-5}
    refused = train("loss=terms", "trainer.max_steps=1", expect=2)
    assert "loss=terms needs its terms" in refused.output and "Traceback" not in refused.output
