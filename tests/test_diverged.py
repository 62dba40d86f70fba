"""A run that blows up stops cleanly at the first non-finite loss or gradient, keeps a
complete record up to that point, and its diagnosis names where it broke. The check costs
no extra host copy per step."""

import csv
import json
import math
import time

import pytest
import torch

from initlab.data import make_splits
from initlab.model import build_model
from initlab.recorders import GradNormRecorder
from initlab.trainer import Trainer
from tests._diagnose_support import run_quietly


def grad_norm_rows(run_dir):
    with open(run_dir / "grad_norms.csv") as f:
        return [(int(r["step"]), int(r["epoch"]), r["param"], float(r["norm"]))
                for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("diverged") / "run"
    # LeakyReLU: ReLU units may all die (no overflow) before the weights blow up.
    summary = run_quietly(run_dir, "act=lrelu", "optim=sgd", "optim.lr=100",
                          "trainer.epochs=50")
    # The report step draws any record, NaN/Inf included.
    from rich.console import Console

    from initlab.report import render_run

    render_run(run_dir, console=Console(quiet=True), figures="full", tables="full")
    return run_dir, summary


def metric_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def first_non_finite_epoch(run_dir) -> int:
    """Read straight from the CSVs, independently of initlab.diagnose."""
    epochs = [epoch for _, epoch, _, norm in grad_norm_rows(run_dir) if not math.isfinite(norm)]
    epochs += [int(m["epoch"]) for m in metric_rows(run_dir)
               if not (math.isfinite(m["train_loss"]) and math.isfinite(m["dev_loss"]))]
    return min(epochs)


def test_huge_learning_rate_stops_with_status_diverged_at_the_first_bad_epoch(diverged):
    run_dir, summary = diverged
    assert summary["status"] == "diverged"
    assert summary["epochs_run"] < 50
    # The fit stopped in the very epoch where the first NaN/Inf appeared.
    assert summary["epochs_run"] == first_non_finite_epoch(run_dir)
    assert f"at epoch {summary['epochs_run']}" in summary["stop_reason"]


def test_the_record_and_figures_up_to_the_blow_up_are_complete(diverged):
    run_dir, summary = diverged
    with open(run_dir / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == summary["epochs_run"]
    for name in ("summary.json", "metrics.csv", "grad_norms.csv", "activations.csv",
                 "units.csv", "checkpoints/last.pt", "data.pt", "tables/diagnosis.txt",
                 "figures/grad_norm_over_time.png", "figures/loss_accuracy.png"):
        assert (run_dir / name).exists(), name
    # The NaN/Inf are shown in the tables, not dropped.
    assert "NaN" in (run_dir / "tables" / "training_log.txt").read_text()


def test_the_non_finite_finding_names_where_it_broke_and_counts(diverged):
    run_dir, summary = diverged
    stored = json.loads((run_dir / "summary.json").read_text())["diagnosis"]
    assert [f["code"] for f in stored] == ["non_finite", "exploding_gradient"]
    finding = stored[0]
    epoch = first_non_finite_epoch(run_dir)
    bad_losses = [m for m in metric_rows(run_dir)
                  if not (math.isfinite(m["train_loss"]) and math.isfinite(m["dev_loss"]))]
    bad_norms = [r for r in grad_norm_rows(run_dir) if not math.isfinite(r[3])]
    assert finding["first_epoch"] == epoch
    assert finding["value"] >= len(bad_losses) + len(bad_norms) > 0
    assert finding["layers"]  # a layer is always named
    assert f"at epoch {epoch}" in finding["message"]
    assert "status diverged" in finding["message"]
    assert "optim.lr=10" in finding["fix"]
    # The gradients grew before anything broke, and the record says so.
    assert stored[1]["first_epoch"] < epoch
    assert "non_finite" in (run_dir / "tables" / "diagnosis.txt").read_text()


class PoisonGradient:
    """Test-only callback: turns one gradient NaN at a chosen step, loss untouched."""

    def __init__(self, model, step: int):
        self.model, self.step = model, step

    def after_backward(self, trainer):
        if trainer.state.step == self.step:
            self.model.fc2.weight.grad[0, 0] = math.nan


def small_fit(epochs=4, batch_size=32, poison_step=None, chunk_steps=4096, frozen=()):
    """A 2-8-8-1 ReLU net on 128 moons, SGD; ``frozen`` parameters are left out of the
    optimizer, so a poisoned gradient there never reaches the weights or the loss."""
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    data = OmegaConf.create({"name": "moons", "n_samples": 200, "noise": 0.2, "shuffle": True,
                             "n_train": 128, "n_dev": 36, "n_test": 36})
    splits = make_splits(data, 0)
    model = build_model(OmegaConf.create({"width": 8, "depth": 3}),
                        OmegaConf.create({"name": "relu"}), 2)
    recorder = GradNormRecorder(model, chunk_steps=chunk_steps)
    callbacks = [PoisonGradient(model, poison_step)] if poison_step is not None else []
    trained = [p for name, p in model.named_parameters() if name not in frozen]
    opt = torch.optim.SGD(trained, lr=0.1)
    trainer = Trainer(model, opt, splits, epochs=epochs, batch_size=batch_size,
                      callbacks=[*callbacks, recorder], shuffle_gen=torch.Generator())
    return trainer, recorder


@pytest.mark.parametrize(("chunk_steps", "max_values"), [(4096, 1024), (3, 1024), (4096, 2)])
def test_a_nan_gradient_stops_the_fit_in_its_epoch_and_is_named_first(chunk_steps, max_values,
                                                                       monkeypatch):
    # chunk_steps=3: the bad norm is flushed to the host mid-epoch and checked via a sum;
    # max_values=2: the epoch's 24 norms are checked through their sum on the device.
    monkeypatch.setattr(GradNormRecorder, "max_epoch_values", max_values)
    # 128 examples, batches of 32: 4 steps per epoch; step 5 is in epoch 2.
    trainer, recorder = small_fit(poison_step=5, chunk_steps=chunk_steps)
    state = trainer.fit()
    assert (state.epoch, state.step) == (2, 8)
    # The NaN weights also spoil the later losses, but the gradient came first.
    assert state.stop_reason == "non-finite gradient norms at epoch 2"
    norms = recorder.norms()
    assert norms.shape == (8, 6)
    assert math.isnan(norms[5, recorder.names.index("fc2.weight")])


@pytest.mark.parametrize("check_gradients", [True, False])
def test_a_nan_gradient_the_loss_never_sees_still_stops_the_fit(check_gradients):
    trainer, _ = small_fit(poison_step=5, frozen=("fc2.weight",))
    if not check_gradients:
        trainer._finite_checks = []  # the trainer before it read gradient norms
    state = trainer.fit()
    assert all(math.isfinite(m.train_loss) and math.isfinite(m.dev_loss) for m in state.history)
    if check_gradients:
        assert state.stop_reason == "non-finite gradient norms at epoch 2"
    else:
        assert state.stop_reason is None and state.epoch == 4


def test_stopping_on_gradients_adds_no_host_copy_per_step(monkeypatch):
    counts = {"tolist": 0, "item": 0}
    for name in counts:
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            counts[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    trainer, _ = small_fit(epochs=3, batch_size=8)  # 16 steps per epoch
    started = time.perf_counter()
    trainer.fit()
    assert 0 < trainer.state.train_s <= time.perf_counter() - started
    assert trainer.state.step == 48
    assert counts == {"tolist": 3, "item": 0}  # one copy per epoch, whatever the steps
