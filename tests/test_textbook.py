"""The textbook's three experiments (NNDL ch. 4.5), run through `run()`, and their numbers
checked against an independent plain-autograd implementation fed the same init.pt and data.pt."""

import csv
import math

import pytest
import torch

ACT = {
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "lrelu": lambda x: torch.where(x > 0, x, 0.01 * x),
}


def read_grad_norms(run_dir):
    """{step: {param: norm}} from grad_norms.csv."""
    out: dict[int, dict[str, float]] = {}
    with open(run_dir / "grad_norms.csv") as f:
        for row in csv.DictReader(f):
            out.setdefault(int(row["step"]), {})[row["param"]] = float(row["norm"])
    return out


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def reference_sgd(run_dir, act: str, lr: float, steps: int):
    """Full-batch SGD on sigmoid-output + BCE written out by hand, in float64.

    Returns ([{param: grad norm}] per step, [train loss] per step) — computed from the
    run's own init.pt and data.pt but with none of initlab's model, loss or trainer code.
    """
    state = torch.load(run_dir / "checkpoints" / "init.pt", weights_only=True)
    data = torch.load(run_dir / "data.pt", weights_only=True)
    X, y = data["X_train"].double(), data["y_train"].double()
    params = {k: v.double().clone().requires_grad_(True) for k, v in state.items()}
    depth = len(params) // 2
    f = ACT[act]
    norms, losses = [], []
    for _ in range(steps):
        h = X
        for k in range(1, depth):
            h = f(h @ params[f"fc{k}.weight"].T + params[f"fc{k}.bias"])
        z = (h @ params[f"fc{depth}.weight"].T + params[f"fc{depth}.bias"]).squeeze(-1)
        p = 1 / (1 + torch.exp(-z))
        loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        norms.append({k: g.norm().item() for k, g in zip(params, grads)})
        losses.append(loss.item())
        with torch.no_grad():
            for p_, g in zip(params.values(), grads):
                p_ -= lr * g
    return norms, losses


def _identical_units(run_dir):
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    w1, b1, w2 = last["fc1.weight"], last["fc1.bias"], last["fc2.weight"]
    assert w1.shape == (5, 2)

    def identical(t, like):  # up to float32 summation order, a few ulp
        return torch.allclose(t, like.expand_as(t), rtol=1e-5, atol=1e-12)

    assert identical(w1, w1[:1]) and identical(b1, b1[:1]) and identical(w2, w2[:, :1])
    return w1


def test_zero_init_on_the_books_balanced_split_stays_at_50_percent_and_ln2(run_lab):
    """Seed 0's 640 training points are 320 of each class: at zero init every gradient is
    exactly 0 (the saddle), so nothing moves: accuracy 50 %, loss ln 2, as the book shows."""
    run_dir, summary = run_lab("experiment=zero_init")
    _identical_units(run_dir)
    assert summary["epochs_run"] == 2000
    for split in ("train", "dev", "test"):
        assert summary["metrics"][split]["loss"] == pytest.approx(math.log(2), abs=2e-3)
        assert summary["metrics"][split]["acc"] == pytest.approx(0.5, abs=0.06)
    # Independent check: the first 50 steps of hand-written SGD give the same losses and norms.
    ref_norms, ref_losses = reference_sgd(run_dir, "sigmoid", lr=0.2, steps=50)
    ours = read_grad_norms(run_dir)
    metrics = read_metrics(run_dir)
    for step in range(50):
        assert metrics[step]["train_loss"] == pytest.approx(ref_losses[step], rel=1e-5)
        for param, norm in ref_norms[step].items():
            assert ours[step][param] == pytest.approx(norm, rel=1e-4, abs=1e-9)


def test_zero_init_on_an_unbalanced_split_moves_yet_keeps_every_hidden_unit_identical(run_lab):
    """Seed 1's split is not balanced: the weights move, but every hidden unit keeps the same
    incoming weights, bias and outgoing weight (symmetry is never broken), and the losses
    and gradient norms follow hand-written float64 SGD."""
    run_dir, _ = run_lab("experiment=zero_init", "seed=1", "trainer.epochs=200")
    y = torch.load(run_dir / "data.pt")["y_train"]
    assert int(y.sum()) * 2 != len(y)
    assert _identical_units(run_dir).abs().max() > 1e-3
    ref_norms, ref_losses = reference_sgd(run_dir, "sigmoid", lr=0.2, steps=50)
    ours, metrics = read_grad_norms(run_dir), read_metrics(run_dir)
    for step in range(50):
        assert metrics[step]["train_loss"] == pytest.approx(ref_losses[step], rel=1e-5)
        for param, norm in ref_norms[step].items():
            assert ours[step][param] == pytest.approx(norm, rel=1e-3, abs=1e-9)


@pytest.fixture(scope="module")
def vanishing_runs(tmp_path_factory):
    from initlab.run import run
    from tests.conftest import compose_config

    runs = {}
    for name, overrides in {
        "sigmoid": ["experiment=vanishing_gradient", "act=sigmoid"],
        "relu": ["experiment=vanishing_gradient", "act=relu"],
        "dead_relu": ["experiment=dead_relu", "act=relu"],
        "dead_lrelu": ["experiment=dead_relu", "act=lrelu"],
    }.items():
        out = tmp_path_factory.mktemp(name)
        run(compose_config(*overrides, "trainer.progress=false"), out, quiet=True)
        runs[name] = out
    return runs


def test_vanishing_gradient_textbook_magnitudes(vanishing_runs):
    sig = read_grad_norms(vanishing_runs["sigmoid"])[0]
    relu = read_grad_norms(vanishing_runs["relu"])[0]
    # Textbook: ~0.3 at fc5 falling to ~1e-11 at fc1 with sigmoid, ~1e-8 with ReLU.
    assert 0.1 < sig["fc5.weight"] < 1.0
    assert 1e-12 < sig["fc1.weight"] < 1e-10
    assert 1e-9 < relu["fc1.weight"] < 1e-7
    # Monotone decay toward the input, and sigmoid far below ReLU at fc1.
    for norms in (sig, relu):
        layers = [norms[f"fc{k}.weight"] for k in range(1, 6)]
        assert layers == sorted(layers)
    assert sig["fc1.weight"] < 1e-2 * relu["fc1.weight"]


@pytest.mark.parametrize("name, act", [("sigmoid", "sigmoid"), ("relu", "relu"),
                                       ("dead_relu", "relu"), ("dead_lrelu", "lrelu")])
def test_first_step_matches_independent_autograd(vanishing_runs, name, act):
    run_dir = vanishing_runs[name]
    ref_norms, ref_losses = reference_sgd(run_dir, act, lr=0.01, steps=1)
    ours = read_grad_norms(run_dir)[0]
    assert set(ours) == set(ref_norms[0])
    for param, norm in ref_norms[0].items():
        if norm == 0:
            assert ours[param] == 0
        else:
            assert ours[param] == pytest.approx(norm, rel=1e-4)
    assert read_metrics(run_dir)[0]["train_loss"] == pytest.approx(ref_losses[0], rel=1e-5)


def test_dead_relu_only_output_bias_has_gradient(vanishing_runs):
    norms = read_grad_norms(vanishing_runs["dead_relu"])[0]
    assert norms["fc5.bias"] > 0.1
    assert all(v == 0.0 for k, v in norms.items() if k != "fc5.bias")


def test_leaky_relu_brings_gradients_back(vanishing_runs):
    norms = read_grad_norms(vanishing_runs["dead_lrelu"])[0]
    assert all(v > 0 for v in norms.values())
    assert norms["fc1.weight"] < 1e-6  # small, but not zero
