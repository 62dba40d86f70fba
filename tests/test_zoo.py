"""The zoo: broken and healthy configurations with their exact expected findings.

Each entry runs the real lab in-process (figures skipped to keep the suite fast; the
diagnosis reads only CSV/JSON/checkpoints) and asserts the exact list of finding codes:
none missing, none extra. Healthy runs must end with no finding at all. docs/diagnosis.md
lists the zoo with the reasons behind each expectation.
"""

import csv
import math

import pytest
import torch

from tests._diagnose_support import run_quietly

# Entries that name optim=adam were calibrated with Adam (the default optimizer then);
# they keep it so their verdicts do not move with the default.
EXPERIMENT_ZOO = [
    # --- the textbook presets (NNDL 4.5) and their contrasts
    ("zero_init", ["experiment=zero_init"], ["symmetric_weights", "not_learning"]),
    ("zero_init_contrast_normal", ["experiment=zero_init", "init=normal",
                                   "trainer.epochs=500"], []),
    ("vanishing_sigmoid", ["experiment=vanishing_gradient"], ["vanishing_gradient"]),
    ("vanishing_relu", ["experiment=vanishing_gradient", "act=relu"], ["vanishing_gradient"]),
    ("dead_relu", ["experiment=dead_relu"], ["dead_units"]),
    # LeakyReLU keeps the units alive, but a slope of 0.01 per layer still starves fc1.
    ("dead_relu_lrelu", ["experiment=dead_relu", "act=lrelu"], ["vanishing_gradient"]),
    # --- deep nets and init scale
    ("deep_sigmoid_small_init", ["model.depth=6", "act=sigmoid", "init=normal", "init.std=0.01",
                                 "optim=sgd", "optim.lr=0.5", "trainer.epochs=100"],
     ["vanishing_gradient", "not_learning"]),
    # Xavier with gain 1 halves the ReLU signal's variance per layer: after 20+ layers most
    # units never switch on. Kaiming keeps it, and the same net learns.
    ("deep_relu_xavier", ["model.depth=30", "model.width=32", "act=relu", "init=xavier_normal",
                          "init.gain=1.0", "optim=sgd", "optim.lr=0.1", "trainer.epochs=100"],
     ["dead_units", "not_learning"]),
    ("deep_relu_kaiming", ["model.depth=30", "model.width=32", "act=relu", "init=kaiming_normal",
                           "optim=sgd", "optim.lr=0.1", "trainer.epochs=100"], []),
    ("huge_init_relu", ["optim=adam", "init=normal", "init.std=10", "trainer.epochs=50"],
     ["exploding_gradient"]),
    ("huge_init_tanh", ["optim=adam", "act=tanh", "init=normal", "init.std=10", "trainer.epochs=50"],
     ["saturation"]),
    ("constant_init", ["optim=adam", "init=constant", "trainer.epochs=100"], ["symmetric_weights"]),
    ("tanh_zero_init", ["optim=adam", "act=tanh", "init=zeros", "trainer.epochs=100"],
     ["symmetric_weights", "dead_units", "not_learning"]),
    # --- biases and learning rates
    ("negative_bias_sigmoid", ["optim=adam", "act=sigmoid", "init=xavier_normal", "init.bias=-8",
                               "trainer.epochs=50"],
     ["saturation", "vanishing_gradient", "not_learning"]),
    ("negative_bias_relu", ["optim=adam", "init.bias=-3", "trainer.epochs=100"],
     ["dead_units", "not_learning"]),
    # LeakyReLU: with plain ReLU the units may all die before anything overflows.
    ("huge_lr", ["act=lrelu", "optim=sgd", "optim.lr=100", "trainer.epochs=50"],
     ["non_finite", "exploding_gradient"]),
    # Too large a step kills ReLUs during training, yet the survivors still learn.
    ("large_lr_kills_units", ["optim=sgd", "optim.lr=5", "trainer.epochs=100"], ["dead_units"]),
    # --- healthy runs
    ("default", [], []),
    # The README's second command: the healthy default net, but zero init and sigmoid.
    ("default_zero_init_sigmoid", ["init=zeros", "act=sigmoid"], ["symmetric_weights", "not_learning"]),
    ("tanh_xavier", ["optim=adam", "act=tanh", "init=xavier_normal", "trainer.epochs=100"], []),
    ("sigmoid_xavier", ["optim=adam", "act=sigmoid", "init=xavier_normal", "trainer.epochs=100"], []),
    ("circles", ["optim=adam", "data=circles", "trainer.epochs=100"], []),
]
ZOO = [(name, overrides, expected, "config") for name, overrides, expected in EXPERIMENT_ZOO]
ZOO.append(("smoke", [], [], "smoke"))


@pytest.fixture(scope="module")
def zoo_runs(tmp_path_factory):
    """Each zoo entry is run once per test session, on one thread (tiny nets run faster
    without threading, and the suite shares two cores), without figures."""
    import initlab.report.figures as figures

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    render = figures.render_figures
    figures.render_figures = lambda record, **kwargs: []
    root = tmp_path_factory.mktemp("zoo")
    cache: dict[str, tuple] = {}

    def get(name):
        if name not in cache:
            _, overrides, _, config_name = next(z for z in ZOO if z[0] == name)
            run_dir = root / name
            cache[name] = run_dir, run_quietly(run_dir, *overrides, config_name=config_name)
        return cache[name]

    yield get
    figures.render_figures = render
    torch.set_num_threads(threads)


def findings_of(summary) -> dict:
    return {f["code"]: f for f in summary["diagnosis"]}


@pytest.mark.parametrize(("name", "expected"), [(z[0], z[2]) for z in ZOO],
                         ids=[z[0] for z in ZOO])
def test_zoo_findings_are_exactly_the_expected_ones(zoo_runs, name, expected):
    _, summary = zoo_runs(name)
    assert [f["code"] for f in summary["diagnosis"]] == expected


def test_at_least_fifteen_configurations_and_several_healthy_ones():
    assert len(ZOO) >= 15
    assert sum(1 for z in ZOO if not z[2]) >= 5


# -------------------------------------------------- the evidence behind key findings
def test_zero_init_says_all_five_units_are_identical(zoo_runs):
    run_dir, summary = zoo_runs("zero_init")
    sym = findings_of(summary)["symmetric_weights"]
    assert sym["layers"] == ["fc1"] and sym["first_epoch"] == 0
    assert sym["message"].startswith("5 of 5 units in fc1 are identical")
    stuck = findings_of(summary)["not_learning"]
    assert "After 2000 epochs" in stuck["message"]
    assert "0.693 (epoch 1) to 0.693 (epoch 2000)" in stuck["message"]
    assert "symmetric_weights" in stuck["fix"]


def weight_norms_at_step0(run_dir):
    with open(run_dir / "grad_norms.csv") as f:
        return {r["param"]: float(r["norm"]) for r in csv.DictReader(f) if r["step"] == "0"}


def test_vanishing_preset_reports_the_textbook_numbers_without_claiming_a_stall(zoo_runs):
    run_dir, summary = zoo_runs("vanishing_sigmoid")
    f = findings_of(summary)["vanishing_gradient"]
    norms = weight_norms_at_step0(run_dir)  # independent of the diagnosis code
    ratio = norms["fc1.weight"] / norms["fc5.weight"]
    assert f["value"] == pytest.approx(ratio)
    assert 1e-11 < norms["fc1.weight"] < 1e-10  # the textbook's ~2.6e-11
    assert f"×{ratio ** 0.25:.3g} per layer" in f["message"]
    assert f["layers"] == ["fc1", "fc2", "fc3"]
    # One epoch is one step: the message reports that step and no trend over training.
    assert "1 of 1 recorded step," in f["message"]
    assert "not_learning" not in findings_of(summary)


def test_dead_relu_is_born_dead_with_a_constant_output(zoo_runs):
    run_dir, summary = zoo_runs("dead_relu")
    f = findings_of(summary)["dead_units"]
    assert f["layers"] == ["fc1", "fc2", "fc3", "fc4"] and f["first_epoch"] == 0
    assert "born dead" in f["message"]
    assert "the network outputs the same value for every input" in f["message"]
    assert "every gradient is exactly 0 except fc5.bias's" in f["message"]
    norms = weight_norms_at_step0(run_dir)
    assert [p for p, v in norms.items() if v != 0] == ["fc5.bias"]


def test_units_killed_by_a_large_step_are_dated_after_epoch_zero(zoo_runs):
    _, summary = zoo_runs("large_lr_kills_units")
    f = findings_of(summary)["dead_units"]
    assert f["first_epoch"] > 0 and "died during training" in f["message"]
    assert "optim.lr=0.5" in f["fix"]


def test_huge_lr_is_diverged_and_its_gradients_grew_before_they_broke(zoo_runs):
    _, summary = zoo_runs("huge_lr")
    assert summary["status"] == "diverged"
    grown = findings_of(summary)["exploding_gradient"]
    broken = findings_of(summary)["non_finite"]
    assert grown["first_epoch"] < broken["first_epoch"]
    assert math.isfinite(grown["value"]) and grown["value"] > grown["threshold"]


def last_train_loss(run_dir) -> float:
    with open(run_dir / "metrics.csv") as f:
        return float(list(csv.DictReader(f))[-1]["train_loss"])


def test_xavier_and_kaiming_differ_only_in_init(zoo_runs):
    xavier_dir, xavier = zoo_runs("deep_relu_xavier")
    kaiming_dir, _ = zoo_runs("deep_relu_kaiming")
    # Xavier ends where it started, at log 2 = 0.693 (a constant output); Kaiming learned.
    assert last_train_loss(xavier_dir) == pytest.approx(math.log(2), abs=1e-3)
    assert last_train_loss(kaiming_dir) < 0.4
    assert "init=kaiming_normal" in findings_of(xavier)["dead_units"]["fix"]
