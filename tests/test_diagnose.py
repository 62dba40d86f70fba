"""The diagnosis rules on hand-made records (findings known by construction), the per-unit
activity recorder against an independent computation, and the findings table."""

import json
import math

import pytest
import torch

from initlab.config import DiagnoseConfig
from initlab.diagnose import CODES, NO_PROBLEMS, diagnose, diagnosis_table
from initlab.record import read_record
from initlab.recorders import SATURATION_THRESHOLD
from initlab.report.tables import table_text
from tests._diagnose_support import layer_norms, write_record


def codes(run_dir) -> list[str]:
    return [f.code for f in diagnose(read_record(run_dir))]


def only(run_dir, code):
    findings = diagnose(read_record(run_dir))
    assert [f.code for f in findings] == [code]
    return findings[0]


# ----------------------------------------------------------------- vanishing / exploding
def test_vanishing_gradient_reports_the_per_layer_factor(tmp_path):
    # fc1 1e-8, fc4 1e-1: a ratio of 1e-7 over 3 hops, i.e. x(1e-7)^(1/3) per layer.
    steps = {s: layer_norms(4, [1e-8, 1e-6, 1e-4, 1e-1]) for s in range(3)}
    f = only(write_record(tmp_path, depth=4, grad_norms=steps), "vanishing_gradient")
    assert f.value == pytest.approx(1e-7, rel=1e-5)
    assert f.threshold == DiagnoseConfig.vanishing_ratio
    assert f.first_epoch == 1
    assert f.layers == ["fc1", "fc2"]  # the layers whose gradient is below vanishing_norm
    assert f"×{(1e-7) ** (1 / 3):.3g} per layer" in f.message
    assert "3 of 3 recorded steps" in f.message


@pytest.mark.parametrize(("first", "fires"), [(0.9e-4, True), (1.1e-4, False)])
def test_vanishing_needs_the_first_layer_norm_below_the_bound_too(tmp_path, first, fires):
    # Ratio 1e-5 in both cases; only the absolute norm of fc1 decides (AutoTrainer's beta_2).
    steps = {0: layer_norms(3, [first, first * 100, first * 1e5])}
    assert codes(write_record(tmp_path, grad_norms=steps)) == (
        ["vanishing_gradient"] if fires else [])


def test_an_exactly_zero_first_gradient_is_blocked_not_vanishing(tmp_path):
    # Zero init: fc1's gradient is exactly 0 because fc2's weights are 0. No layer-by-layer
    # shrinking happened, so vanishing_gradient must stay silent.
    steps = {0: layer_norms(3, [0.0, 1e-10, 1e-3])}
    assert codes(write_record(tmp_path, grad_norms=steps)) == []


def test_a_ratio_seen_at_one_later_step_only_is_noise(tmp_path):
    healthy = layer_norms(3, [0.1, 0.1, 0.1])
    steps = {s: dict(healthy) for s in range(10)}
    steps[5] = layer_norms(3, [0.5, 0.1, 0.001])  # ratio 500 > 70, once, mid-run
    assert codes(write_record(tmp_path, grad_norms=steps)) == []
    steps.update({s: layer_norms(3, [0.5, 0.1, 0.001]) for s in range(5, 10)})  # half the run
    f = only(write_record(tmp_path / "b", grad_norms=steps), "exploding_gradient")
    assert f.value == pytest.approx(500, rel=1e-5) and f.threshold == 70
    assert f.first_epoch == 6


def test_exploding_gradient_by_absolute_norm_says_when_it_grew(tmp_path):
    steps = {0: layer_norms(3, [0.2, 0.3, 0.3]), 1: layer_norms(3, [5.0, 250.0, 40.0]),
             2: layer_norms(3, [9.0, 900.0, 80.0])}
    f = only(write_record(tmp_path, grad_norms=steps), "exploding_gradient")
    assert (f.value, f.threshold, f.first_epoch, f.layers) == (900.0, 100.0, 2, ["fc2"])
    assert "fc2.weight reached 250 at step 1" in f.message
    assert "up from 0.3 at step 0" in f.message
    assert "Lower the learning rate" in f.fix


# ----------------------------------------------------------------------- dead / saturated
def unit_rows(epoch, layer, actives, saturated=math.nan):
    return [(epoch, layer, i, a, saturated) for i, a in enumerate(actives)]


def test_dead_units_count_per_unit_and_need_more_than_the_layer_fraction(tmp_path):
    half = [0.0] * 8 + [0.5] * 8  # exactly 50%: SageMaker's threshold_layer is "more than"
    assert codes(write_record(tmp_path / "a", width=16, units=unit_rows(0, "fc1", half))) == []
    most = [0.0] * 9 + [0.5] * 7
    f = only(write_record(tmp_path / "b", width=16, units=unit_rows(0, "fc1", most)),
             "dead_units")
    assert f.value == pytest.approx(9 / 16)
    assert "9 of 16 units of fc1" in f.message and "from initialization (epoch 0)" in f.message
    assert f.severity == "warning"  # part of a layer, and nothing says the run did not learn
    # A unit active on a single example is alive: the count is over the whole train set.
    one_example = [0.0] * 8 + [1 / 640] + [0.5] * 7
    assert codes(write_record(tmp_path / "c", width=16,
                              units=unit_rows(0, "fc1", one_example))) == []


def test_units_that_die_during_training_are_dated_from_the_first_epoch_they_stay_dead(tmp_path):
    units = (unit_rows(0, "fc1", [0.5] * 4) + unit_rows(20, "fc1", [0.0, 0.0, 0.0, 0.4])
             + unit_rows(40, "fc1", [0.5] * 4) + unit_rows(60, "fc1", [0.0, 0.0, 0.0, 0.4])
             + unit_rows(80, "fc1", [0.0, 0.0, 0.0, 0.3]))
    f = only(write_record(tmp_path, units=units), "dead_units")
    assert f.first_epoch == 60  # dead at 20, revived at 40: the unbroken stretch starts at 60
    assert "died during training" in f.message


def test_a_layer_dead_at_init_is_a_born_dead_net(tmp_path):
    # No init_signal in this record: units.csv at epoch 0 says fc1 is zero everywhere.
    units = unit_rows(0, "fc1", [0.0] * 4) + unit_rows(0, "fc2", [0.0, 0.0, 0.0, 0.7])
    f = only(write_record(tmp_path, units=units), "born_dead")
    assert f.layers == ["fc1"] and f.severity == "problem" and f.first_epoch == 0
    assert "every unit of fc1 (4) is zero on every training input" in f.message
    assert "same value for every input" in f.message and "born dead" in f.message


def test_a_layer_that_dies_in_training_means_a_constant_output(tmp_path):
    units = (unit_rows(0, "fc1", [0.5] * 4) + unit_rows(0, "fc2", [0.5] * 4)
             + unit_rows(20, "fc1", [0.0] * 4) + unit_rows(20, "fc2", [0.0, 0.0, 0.0, 0.7]))
    f = only(write_record(tmp_path, units=units), "dead_units")
    assert f.layers == ["fc1", "fc2"] and f.severity == "problem"  # a whole layer is dead
    assert "All units of fc1" in f.message and "3 of 4 units of fc2" in f.message
    assert "same value for every input" in f.message and "died during training" in f.message


def test_saturation_counts_the_layers_activations_in_the_flat_tail(tmp_path):
    # Each unit's share of examples in the tail; the layer's share is their mean (SageMaker's
    # SaturatedActivation counts activations, not units).
    shares = [0.95, 0.92, 0.91, 0.5]
    units = [(0, "fc1", i, 1.0, s) for i, s in enumerate(shares)]
    f = only(write_record(tmp_path, act="tanh", units=units), "saturation")
    assert f.value == pytest.approx(sum(shares) / 4) and f.threshold == 0.5
    assert "82% of fc1's activations" in f.message and "|a| > 0.97" in f.message
    assert "3 of 4 units there are saturated on most training examples" in f.message
    assert f.severity == "warning"  # no metrics: nothing says it stopped learning
    units = [(0, "fc1", i, 1.0, s) for i, s in enumerate([0.5, 0.5, 0.45, 0.5])]
    assert codes(write_record(tmp_path / "b", act="tanh", units=units)) == []


def test_saturation_is_a_problem_when_the_run_did_not_learn(tmp_path):
    units = [(0, "fc1", i, 1.0, 0.99) for i in range(4)]
    run_dir = write_record(tmp_path, act="tanh", units=units, metrics=flat_metrics(12))
    findings = diagnose(read_record(run_dir))
    assert [(f.code, f.severity) for f in findings] == [("saturation", "problem"),
                                                        ("not_learning", "problem")]
    assert "saturation" in findings[1].fix


def test_thresholds_come_from_the_runs_saved_diagnose_config(tmp_path):
    units = [(0, "fc1", i, 1.0, s) for i, s in enumerate([0.95, 0.95, 0.95, 0.5])]
    strict = {"layer_fraction": 0.9}  # 71% of the activations are saturated
    assert codes(write_record(tmp_path, act="tanh", units=units, diagnose=strict)) == []


# ------------------------------------------------------------------------- not_learning
def flat_metrics(epochs, loss=0.6931, acc=0.5):
    return [(e, loss, acc, loss, acc) for e in range(1, epochs + 1)]


def test_not_learning_waits_for_enough_epochs(tmp_path):
    assert codes(write_record(tmp_path / "short", metrics=flat_metrics(9))) == []
    f = only(write_record(tmp_path / "long", metrics=flat_metrics(10)), "not_learning")
    assert f.value == 0.5 and f.threshold == pytest.approx(0.6)  # chance 0.5 without data.pt
    assert "After 10 epochs the best dev accuracy is 0.500" in f.message
    assert "no drop at all" in f.message


def test_a_flat_loss_is_not_learning_even_above_chance(tmp_path):
    rows = [(e, 0.50 - 0.0001 * e, 0.8, 0.5, 0.8) for e in range(1, 21)]
    f = only(write_record(tmp_path, metrics=rows), "not_learning")
    assert f.threshold == DiagnoseConfig.flat_loss_fraction
    assert f.value == pytest.approx((0.4999 - 0.498) / 0.4999, rel=1e-3)


def test_learned_then_collapsed_has_its_own_words(tmp_path):
    """He'15's Xavier runs that reached 0.956 dev accuracy and fell back to log 2 are not
    'the loss went from 0.693 to 0.693': the words say it learned, when, and then lost it."""
    rise = [(e, 0.693 - 0.06 * e, 0.9, 0.3, min(0.5 + 0.05 * e, 0.956)) for e in range(1, 11)]
    fall = [(e, 0.693, 0.5, 0.693, 0.5) for e in range(11, 21)]
    f = only(write_record(tmp_path, metrics=rise + fall), "not_learning")
    assert f.message.startswith("It learned, then collapsed: the best dev accuracy 0.956 came at "
                                "epoch 10")
    assert "back at 0.693" in f.message and "0.693 to 0.693" not in f.message
    assert "checkpoints/best.pt" in f.fix
    # A loss that never fell is still plain not learning.
    flat = [(e, 0.693, 0.5, 0.693, 0.9) for e in range(1, 21)]
    assert "collapsed" not in only(write_record(tmp_path / "flat", metrics=flat), "not_learning").message


# --------------------------------------------------------------------------- non_finite
def test_non_finite_names_the_first_step_and_layer_and_counts_every_value(tmp_path):
    steps = {s: layer_norms(3, [0.1, 0.1, 0.1]) for s in range(4)}
    steps[2]["fc2.weight"] = math.inf
    steps[3] = {p: math.nan for p in steps[3]}
    metrics = [(1, 0.6, 0.7, 0.6, 0.7), (2, 0.5, 0.7, 0.5, 0.7), (3, 0.5, 0.7, 0.5, 0.7),
               (4, math.nan, 0.5, math.nan, 0.5)]
    f = only(write_record(tmp_path, grad_norms=steps, metrics=metrics, status="diverged"),
             "non_finite")
    assert (f.first_epoch, f.layers, f.value) == (3, ["fc2"], 1 + 6 + 1)
    assert "step 2 (epoch 3) in fc2.weight" in f.message
    assert "6 NaN and 1 Inf of 24 recorded gradient norms" in f.message
    assert "training loss was nan at epoch 4" in f.message
    assert "status diverged" in f.message


def test_snapshots_after_the_first_non_finite_value_are_not_diagnosed(tmp_path):
    # After the blow-up the units read as dead; that describes the wreck, not the config.
    steps = {0: layer_norms(3, [0.1, 0.1, 0.1]), 1: layer_norms(3, [math.inf] * 3)}
    units = unit_rows(0, "fc1", [0.5] * 4) + unit_rows(2, "fc1", [0.0] * 4)
    assert codes(write_record(tmp_path, grad_norms=steps, units=units)) == ["non_finite"]


# ------------------------------------------------------------------ table and summary
def test_healthy_record_prints_no_problems_and_lists_what_was_checked(tmp_path):
    run_dir = write_record(tmp_path, grad_norms={0: layer_norms(3, [0.1, 0.2, 0.3])})
    record = read_record(run_dir)
    findings = diagnose(record)
    text = table_text(diagnosis_table(findings))
    assert NO_PROBLEMS in text
    assert all(code in text for code in CODES)


def test_findings_have_the_contract_fields(tmp_path):
    run_dir = write_record(tmp_path, metrics=flat_metrics(12))
    (stored,) = [f.as_dict() for f in diagnose(read_record(run_dir))]
    assert set(stored) == {"code", "severity", "layers", "first_epoch", "first_step", "value",
                           "threshold", "message", "fix"}
    assert stored["code"] == "not_learning" and stored["severity"] == "problem"
    assert stored["first_epoch"] == 1 and stored["first_step"] is None


def test_a_run_stores_its_diagnosis_and_the_report_never_rewrites_the_summary(run_lab):
    from initlab.report import render_run

    run_dir, summary = run_lab("init=zeros", "act=sigmoid", "trainer.epochs=30")
    before = (run_dir / "summary.json").read_bytes()
    stored = json.loads(before)["diagnosis"]
    assert [d["code"] for d in stored] == [f.code for f in diagnose(read_record(run_dir))]
    assert "symmetric_weights" in [d["code"] for d in stored]
    render_run(run_dir, figures="none", tables="full")
    assert (run_dir / "summary.json").read_bytes() == before


# -------------------------------------------------------------- the unit-activity view
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_unit_activity_matches_an_independent_forward_pass(act):
    from initlab.model import feature_major, forward
    from initlab.options import activation
    from initlab.recorders import activation_views, unit_rows

    gen = torch.Generator().manual_seed(0)
    W1, b1 = torch.randn(6, 2, generator=gen), torch.randn(6, generator=gen)
    W2, b2 = torch.randn(6, 6, generator=gen), torch.randn(6, generator=gen)
    b1[:2] = -50.0  # two units of fc1 off (relu) / saturated (tanh) everywhere
    params = [p[None] for p in (W1, b1, W2, b2, torch.randn(1, 6, generator=gen), torch.zeros(1))]
    X = torch.randn(300, 2, generator=gen)
    f = torch.relu if act == "relu" else torch.tanh
    hidden = []
    forward(params, feature_major(getattr(torch.nn, "ReLU" if act == "relu" else "Tanh")()),
            X.T[None].contiguous(), hidden)
    views = activation_views(hidden, activation(act).bounded)
    rows = list(unit_rows(["fc1", "fc2"], [(0, views["units"][0].tolist())]))
    assert len(rows) == 2 * 6

    h1 = f(X @ W1.T + b1)
    h2 = f(h1 @ W2.T + b2)
    for layer, h in (("fc1", h1), ("fc2", h2)):
        got = [r for r in rows if r[1] == layer]
        for _, _, unit, active, saturated in got:
            assert active == pytest.approx((h[:, unit] != 0).double().mean().item())
            if act == "tanh":
                expected = (h[:, unit].abs() > SATURATION_THRESHOLD).double().mean().item()
                assert saturated == pytest.approx(expected)
            else:
                assert math.isnan(saturated)
    fc1 = {unit: (a, s) for _, layer, unit, a, s in rows if layer == "fc1"}
    if act == "relu":
        assert fc1[0][0] == fc1[1][0] == 0.0
    else:
        assert fc1[0][1] == fc1[1][1] == 1.0


def test_a_finding_over_hundreds_of_layers_stays_readable():
    from rich.console import Console

    from initlab.diagnose import Finding
    from initlab.diagnose.words import names as _names

    layers = [f"fc{k}" for k in range(1, 401)]
    sentence = _names(f"3 of 16 units of {layer}" for layer in layers)
    assert sentence.startswith("3 of 16 units of fc1, 3 of 16 units of fc2,")
    assert sentence.endswith("3 of 16 units of fc400 (400 in all)") and len(sentence) < 200
    finding = Finding("dead_units", layers, 0, 0.9, 0.5, "All " + sentence + " are dead.", "Use act=lrelu.")
    console = Console(width=80, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(diagnosis_table([finding]))
    text = console.export_text()
    assert "fc400 (400 layers)" in text and "Use act=lrelu." in text
    assert max(map(len, text.splitlines())) <= 80


# ----------------------------------------------------------------- the edge of chaos in words
@pytest.mark.parametrize("act, bias_std, critical", [
    ("gelu", 0.0, None), ("silu", 0.0, None), ("silu", 0.223606797749979, None),
    ("tanh", 0.223606797749979, "1.76"), ("relu", 0.0, "2")])
def test_the_phase_advice_is_the_solved_edge_of_chaos_never_one_over_slope_squared(act, bias_std,
                                                                                  critical):
    """GELU and SiLU have phi(0) = 0 and phi'(0) = 1/2, so the old closed form 1 / phi'(0)^2
    advised sigma_w^2 = 4, where every net diverges; they have no critical sigma_w^2 at
    these biases, and the words say so and advise no scale. tanh's is Schoenholz's 1.76,
    ReLU's the line sigma_w^2 = 2 (He)."""
    from types import SimpleNamespace

    from initlab.diagnose.words import phase_clause
    from initlab.signal import predicted
    from tests.conftest import compose_config

    cfg = compose_config(f"act={act}", "init=variance_scaling", "init.distribution=normal",
                         f"init.bias_std={bias_std}", "model.depth=30", "model.width=128")
    shapes = [(128, 2)] + [(128, 128)] * 28 + [(1, 128)]
    theory = predicted(cfg, shapes, [1.0, 2.0, 0.5], [0.1] * 30)
    text, fix = phase_clause(SimpleNamespace(phase="ordered", theory=theory), with_fix=True)
    assert "init.scale=4" not in fix and "σ_w² ≈ 4" not in text
    if critical is None:
        assert fix == "" and "no σ_w² puts χ₁ = 1 at a fixed point" in text
    else:
        assert f"init.scale={critical}" in fix


def test_a_deep_gelu_net_is_not_told_to_scale_up_into_divergence(tmp_path):
    """GELU at sigma_w^2 = 1, depth 12, is ordered (q* = 0, chi_1 = 1/4), and no scale is
    critical without a bias spread: the finding's fix says so instead of 'a larger init
    scale' (above sigma_w^2 = 2.37 the signal grows without bound)."""
    from tests._diagnose_support import run_quietly

    summary = run_quietly(tmp_path, "act=gelu", "init=variance_scaling", "init.distribution=normal",
                          "model.depth=12", "model.width=32", "data.standardize=true",
                          "trainer.epochs=1")
    assert summary["init_signal"]["theory"]["critical"]["kind"] == "none"
    phase = [f for f in summary["diagnosis"] if f["code"] == "signal_phase"]
    assert phase, [f["code"] for f in summary["diagnosis"]]
    assert "no init scale alone reaches the edge of chaos" in phase[0]["fix"]
    assert "above σ_w² ≈ 2.37" in phase[0]["fix"]
    assert "larger init scale" not in phase[0]["fix"] and "init.scale" not in phase[0]["fix"]


def test_vanishing_gradients_depth_scaling_never_overflows():
    """The seed's step-0 ratio is scaled to the config's by (factor / measured)^hops: past
    float range over hundreds of layers (18^400) that power raised OverflowError."""
    from types import SimpleNamespace

    from initlab.diagnose import rules
    from initlab.diagnose.facts import Phase

    for factor, measured in ((0.9, 0.05), (0.05, 0.9)):
        facts = SimpleNamespace(
            t={"vanishing_ratio": 1e-3, "vanishing_norm": 1e-4},
            gradient_profile=[(0, 1e-6, 0.3, 1e-6 / 0.3)],
            phase=Phase(factor=factor, hops=400, source="backpropagated signal", phase="ordered",
                        theory=None, measured=measured),
            persistent=lambda hits: False)
        assert rules.vanishing_gradient(facts, None) is None
