"""The fit loop: event order, gradients seen before the step, stop requests, mini-batches,
and the recorders' numbers against plain autograd."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from initlab.callbacks import LogSchedule
from initlab.data import Splits
from initlab.model import MLP
from initlab.recorders import ActivationRecorder, GradNormRecorder
from initlab.trainer import EVENTS, Trainer


def tiny_setup(n=32, depth=3, act="tanh"):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 2, generator=g)
    y = (X[:, 0] > 0).float()
    splits = Splits(X, y, X[:8], y[:8], X[:8], y[:8])
    torch.manual_seed(0)
    model = MLP(2, 4, depth, OmegaConf.create({"name": act}))
    return model, splits


class EventLog:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name in EVENTS:
            return lambda trainer: self.events.append((name, trainer.state.epoch))
        raise AttributeError(name)


def test_events_fire_in_order():
    model, splits = tiny_setup()
    log = EventLog()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), splits, epochs=2,
            batch_size=16, callbacks=[log]).fit()
    names = [e for e, _ in log.events]
    step = ["after_backward", "after_step"]
    epoch = ["before_epoch", *step, *step, "after_eval", "after_epoch"]
    assert names == ["before_fit", *epoch, *epoch, "after_fit"]


def test_gradients_are_seen_before_the_optimizer_step():
    model, splits = tiny_setup()
    seen = {}

    class Probe:
        def after_backward(self, trainer):
            seen["params"] = [p.detach().clone() for p in trainer.model.parameters()]
            seen["grads"] = [p.grad.clone() for p in trainer.model.parameters()]

    before = [p.detach().clone() for p in model.parameters()]
    lr = 0.5
    Trainer(model, torch.optim.SGD(model.parameters(), lr=lr), splits, epochs=1,
            callbacks=[Probe()]).fit()
    for b, p_seen, g, p_after in zip(before, seen["params"], seen["grads"], model.parameters()):
        assert torch.equal(b, p_seen)  # untouched when the callback ran
        assert torch.allclose(p_after, b - lr * g)  # then the step used exactly those grads


def test_grad_norm_recorder_matches_autograd_every_step():
    model, splits = tiny_setup(depth=4)
    rec = GradNormRecorder(model, chunk_steps=3)  # small chunks exercise the flushes
    expected = []

    class Reference:
        def after_backward(self, trainer):
            expected.append([p.grad.norm().item() for p in trainer.model.parameters()])

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), splits, epochs=4,
                      batch_size=10, callbacks=[rec, Reference()])
    trainer.fit()
    norms = rec.norms()
    assert norms.shape == (4 * 4, 8)  # 32 examples / 10 per batch = 4 steps per epoch
    assert torch.allclose(norms, torch.tensor(expected), rtol=1e-6)


def test_request_stop_ends_after_the_epoch():
    model, splits = tiny_setup()

    class StopAtTwo:
        def after_epoch(self, trainer):
            if trainer.state.epoch == 2:
                trainer.request_stop("enough")

    state = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), splits, epochs=10,
                    callbacks=[StopAtTwo()]).fit()
    assert state.epoch == 2 and state.stop_reason == "enough" and len(state.history) == 2


def test_non_finite_loss_stops_training():
    model, splits = tiny_setup()
    with torch.no_grad():
        model.fc1.weight.fill_(float("nan"))
    state = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), splits, epochs=5).fit()
    assert state.epoch == 1 and "non-finite" in state.stop_reason


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_activation_stats_match_a_direct_forward(act):
    model, splits = tiny_setup(depth=3, act=act)
    with torch.no_grad():  # large weights: tanh units saturate, relu units go to zero
        for p in model.parameters():
            p.mul_(4)
    bounded = "tanh" if act == "tanh" else None
    rec = ActivationRecorder(model, splits.X_train, bounded, LogSchedule(every=1))
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), splits, epochs=1,
            callbacks=[rec]).fit()
    epoch, stats = rec.stats[-1]
    f = torch.tanh if act == "tanh" else torch.relu
    h1 = f(model.fc1(splits.X_train))
    h2 = f(model.fc2(h1))
    for layer_stats, h in zip(stats, (h1, h2)):
        mean, std, frac_zero, frac_sat = layer_stats.tolist()
        assert abs(mean - h.mean().item()) < 1e-5
        assert abs(std - h.std(unbiased=False).item()) < 1e-5
        assert abs(frac_zero - (h == 0).float().mean().item()) < 1e-6
        if act == "tanh":
            assert abs(frac_sat - (h.abs() > 0.97).float().mean().item()) < 1e-6
        else:
            assert math.isnan(frac_sat)
    if act == "tanh":
        assert max(row[3] for row in stats.tolist()) > 0  # the test saw saturation ...
    else:
        assert max(row[2] for row in stats.tolist()) > 0  # ... and zeros
    # the hooks are gone after fit
    assert all(not m._forward_hooks for m in model.modules())
