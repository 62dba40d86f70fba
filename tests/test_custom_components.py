"""Components of the user's own (act=custom, init=custom, data=custom, named by ``_target_``):
a run uses them (checked against independent computations with the same seeds), records
them, and a target that breaks its contract fails in one line before anything trains, in
process and through the real CLI. The example components are tests/custom_components.py."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from initlab import custom
from initlab.config import ConfigError, validate
from initlab.engine import DATA_STREAM, INIT_STREAM, stream_seed
from tests import custom_components as cc
from tests.conftest import compose_config, initlab_cli, read_summary

ROOT = Path(__file__).resolve().parents[1]
CC = "tests.custom_components"
SMOKE = dict(config_name="smoke")


def _swish_by_hand(state: dict, X: torch.Tensor, beta: float, depth: int) -> torch.Tensor:
    h = X.double()
    for k in range(1, depth):
        z = h @ state[f"fc{k}.weight"].double().T + state[f"fc{k}.bias"].double()
        h = z / (1 + torch.exp(-beta * z))  # x * sigmoid(beta x), written out
    return (h @ state[f"fc{depth}.weight"].double().T + state[f"fc{depth}.bias"].double()).squeeze(1)


# ------------------------------------------------------------------ activations
def test_a_custom_activation_run_trains_and_evaluates_with_the_module(run_lab):
    from initlab.model import feature_major, forward, make_activation

    out, summary = run_lab("act=custom", f"act._target_={CC}.Swish", "act.beta=1.5", **SMOKE)
    assert summary["status"] == "completed"
    assert summary["config"]["act"] == {"name": "custom", "_target_": f"{CC}.Swish", "beta": 1.5}
    state = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert set(state) == {f"fc{k}.{p}" for k in (1, 2, 3) for p in ("weight", "bias")}
    data = torch.load(out / "data.pt", weights_only=True)
    logits = _swish_by_hand(state, data["X_train"], 1.5, depth=3)
    # The run's final train loss is the best model's BCE on the training set.
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, data["y_train"].double())
    assert summary["metrics"]["train"]["loss"] == pytest.approx(float(loss), rel=1e-5)
    cfg = compose_config("act=custom", f"act._target_={CC}.Swish", "act.beta=1.5", **SMOKE)
    module = make_activation(cfg.act)
    assert type(module) is cc.Swish and module.beta == 1.5
    params = [state[f"fc{k}.{p}"][None] for k in (1, 2, 3) for p in ("weight", "bias")]
    with torch.no_grad():
        ours = forward(params, feature_major(module), data["X_train"].T[None].contiguous())
    assert torch.allclose(ours[0].double(), logits, atol=1e-5)


def test_a_factory_of_torchs_own_silu_gives_the_built_in_silus_run(run_lab):
    """act._target_=torch.nn.SiLU is act=silu: the same training, signal and theory (the
    gain is set, since a custom activation's is integrated, not SiLU's table value)."""
    common = ("init.gain=1.4", "trainer.epochs=5", "seed=4")
    _, built_in = run_lab("act=silu", *common, **SMOKE)
    _, ours = run_lab("act=custom", "act._target_=torch.nn.SiLU", *common, **SMOKE)
    assert ours["metrics"] == built_in["metrics"]
    assert ours["init_signal"]["q"] == built_in["init_signal"]["q"]
    a, b = ours["init_signal"]["theory"], built_in["init_signal"]["theory"]
    for key in ("q", "grad_sq"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)
    assert a["chi1"] == pytest.approx(b["chi1"], rel=1e-9) and a["phase"] == b["phase"]


def test_a_custom_activations_gain_and_slope_come_from_its_module():
    relu = compose_config("act=custom", "act._target_=torch.nn.ReLU").act
    assert custom.activation_gain(relu) == pytest.approx(math.sqrt(2), rel=1e-9)  # He et al.
    swish = compose_config("act=custom", f"act._target_={CC}.make_swish", "act.beta=2").act
    z = np.linspace(-12, 12, 480_001)
    f = z / (1 + np.exp(-2 * z))
    second = np.trapezoid(f**2 * np.exp(-z**2 / 2), z) / math.sqrt(2 * math.pi)
    assert custom.activation_gain(swish) == pytest.approx(1 / math.sqrt(second), rel=1e-7)
    slope = custom.activation_slope(swish)
    s = 1 / (1 + np.exp(-2 * z[::1000]))
    assert np.allclose(slope(z[::1000]), s + 2 * z[::1000] * s * (1 - s), atol=1e-12)
    assert isinstance(slope(0.3), float)


# ------------------------------------------------------------------ inits
def test_a_custom_inits_weights_are_the_callables_from_the_runs_init_stream(run_lab):
    out, summary = run_lab("init=custom", f"init._target_={CC}.scaled_normal_", "init.scale=1.3",
                           "init.bias=0.25", "seed=3", **SMOKE)
    assert summary["config"]["init"]["_target_"] == f"{CC}.scaled_normal_"
    assert summary["config"]["init"]["scale"] == 1.3
    assert summary["init_signal"]["theory"] is None  # its distribution is unknown to initlab
    state = torch.load(out / "checkpoints" / "init.pt", weights_only=True)
    gen = torch.Generator().manual_seed(3 * 1000 + 1)  # the run's init stream, by hand
    assert stream_seed(3, INIT_STREAM) == 3 * 1000 + 1
    for k in (1, 2, 3):
        w = torch.empty(state[f"fc{k}.weight"].shape)
        cc.scaled_normal_(w, gen, scale=1.3)
        assert torch.equal(state[f"fc{k}.weight"], w)
        assert torch.all(state[f"fc{k}.bias"] == 0.25)


def test_a_custom_init_that_takes_the_bias_sets_it_and_bias_std_comes_after(run_lab):
    out, _ = run_lab("init=custom", f"init._target_={CC}.uniform_with_bias_", "init.bound=0.7",
                     "init.bias_std=0.1", **SMOKE)
    state = torch.load(out / "checkpoints" / "init.pt", weights_only=True)
    gen = torch.Generator().manual_seed(stream_seed(0, INIT_STREAM))
    for k in (1, 2, 3):
        w, b = torch.empty(state[f"fc{k}.weight"].shape), torch.zeros(state[f"fc{k}.bias"].shape)
        cc.uniform_with_bias_(w, b, gen, bound=0.7)
        b.add_(torch.randn(b.shape, generator=gen), alpha=0.1)  # as for every scheme
        assert torch.equal(state[f"fc{k}.weight"], w) and torch.equal(state[f"fc{k}.bias"], b)


def test_torchs_own_init_functions_are_custom_inits():
    cfg = compose_config("init=custom", "init._target_=torch.nn.init.orthogonal_", "init.gain=2")
    validate(cfg)
    from initlab.init import init_linear_

    w, b = torch.empty(6, 4), torch.empty(6)
    init_linear_(w, b, cfg.init, cfg.act, torch.Generator().manual_seed(0))
    assert torch.allclose(w.T @ w, 4 * torch.eye(4), atol=1e-5) and torch.all(b == 0)


# ------------------------------------------------------------------ data sets
def test_a_custom_data_sets_points_are_the_callables_shuffled_and_split(run_lab):
    out, summary = run_lab("data=custom", f"data._target_={CC}.two_rings", "data.gap=0.7",
                           "seed=2", **SMOKE)
    assert summary["config"]["data"]["_target_"] == f"{CC}.two_rings"
    data = torch.load(out / "data.pt", weights_only=True)
    gen = torch.Generator().manual_seed(stream_seed(2, DATA_STREAM))
    X, y = cc.two_rings(n_samples=200, noise=0.2, generator=gen, gap=0.7)
    order = torch.randperm(200, generator=gen)  # initlab's shuffle, after the callable
    X, y = X[order], y[order]
    for split, (a, b) in {"train": (0, 120), "dev": (120, 160), "test": (160, 200)}.items():
        assert torch.equal(data[f"X_{split}"], X[a:b]) and torch.equal(data[f"y_{split}"], y[a:b])


def test_a_numpy_data_set_in_three_dimensions_is_standardized_as_initlabs_own():
    from initlab.data import make_splits

    cfg = compose_config("data=custom", f"data._target_={CC}.numpy_cube", "data.dim=3",
                         "data.shuffle=false", "data.standardize=true").data
    validate(compose_config("data=custom", f"data._target_={CC}.numpy_cube", "data.dim=3"))
    s = make_splits(cfg, 5)
    X, y = cc.numpy_cube(1000, 0.2, torch.Generator().manual_seed(5), dim=3)
    X = torch.as_tensor(X).float()
    train = X[:640]
    mean, std = train.mean(0), train.std(0, correction=0)
    assert torch.allclose(s.X_test, (X[800:1000] - mean) / std, atol=1e-5)
    assert torch.equal(s.y_train, torch.as_tensor(y[:640]).float())


# ------------------------------------------------------------------ bad targets
BAD = [
    (["act=custom"], "act._target_ is required with act=custom"),
    (["act=custom", "act._target_=no_such_pkg.Swish"], "no module named 'no_such_pkg'"),
    (["act=custom", f"act._target_={CC}.Swsh"], "tests.custom_components has no attribute 'Swsh'"),
    (["act=custom", f"act._target_={CC}.NotAModule"], "is the class NotAModule, not a torch.nn.Module"),
    (["act=custom", f"act._target_={CC}.swish_function"], "wrap a function of x in a module"),
    (["act=custom", "act._target_=torch.sin"], "wrap a function of x in a module"),
    (["act=custom", f"act._target_={CC}.Pool"], "changes the shape (5, 7) -> (5, 1)"),
    (["act=custom", f"act._target_={CC}.Softmax"], "is not elementwise"),
    (["act=custom", f"act._target_={CC}.LearnedSwish"], "holds parameters or buffers (beta)"),
    (["act=custom", f"act._target_={CC}.Swish", "act.bta=2"], "unexpected keyword argument 'bta'"),
    (["act=custom", f"act._target_={CC}.Swish", "+act._partial_=true"], "Hydra's instantiate keys"),
    (["init=custom", f"init._target_={CC}.init_without_generator"],
     "cannot be called as tests.custom_components.init_without_generator(weight, generator=gen"),
    (["init=custom", f"init._target_={CC}.init_returning_a_tensor"], "it returned a new tensor"),
    (["init=custom", f"init._target_={CC}.init_from_the_global_stream"],
     "drew different weights from two generators of the same seed"),
    (["init=custom", f"init._target_={CC}.Swish"], "is a class, not a function"),
    (["data=custom", f"data._target_={CC}.data_with_three_classes"], "labels other than 0 and 1"),
    (["data=custom", f"data._target_={CC}.data_of_the_wrong_shape"],
     "returned X of shape (1000, 2, 1): expected (n_samples, data.dim) = (1000, 2)"),
    (["data=custom", f"data._target_={CC}.data_of_one_array"], "a data set returns a pair (X, y)"),
    (["data=custom", f"data._target_={CC}.numpy_cube", "data.dim=1"], None),  # fine: dim is passed
    (["data=custom", f"data._target_={CC}.two_rings", "data.dim=3"],
     "returned X with 2 features but data.dim=3 (set data.dim=2)"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o[1:]) or o[0] for o, _ in BAD])
def test_a_target_that_breaks_its_contract_fails_validation_in_one_line(overrides, message):
    cfg = compose_config(*overrides)
    if message is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
    group = overrides[0].split("=")[0]
    assert str(e.value).startswith(f"{group}.")  # names the key


def test_a_job_with_a_custom_component_trains_alone_under_the_batched_launcher():
    from initlab.engine import group_key

    group_key(compose_config("act=relu"))
    for group, target in (("act", f"{CC}.Swish"), ("init", f"{CC}.scaled_normal_"),
                          ("data", f"{CC}.two_rings")):
        with pytest.raises(ValueError, match="custom component trains alone"):
            group_key(compose_config(f"{group}=custom", f"{group}._target_={target}"))


def test_figures_that_need_the_code_are_skipped_where_it_does_not_import(run_lab, capsys):
    from initlab.record import read_record
    from initlab.report.figures import selected_figures

    out, _ = run_lab("act=custom", f"act._target_={CC}.Swish", **SMOKE)
    key = {s.name for s in selected_figures(read_record(out), "full")}
    assert {"decision_boundary", "initial_weights"} <= key
    summary = json.loads((out / "summary.json").read_text())
    summary["config"]["act"]["_target_"] = "tests.gone_module.Swish"  # another machine's run
    (out / "summary.json").write_text(json.dumps(summary))
    key = {s.name for s in selected_figures(read_record(out), "full")}
    assert not key & {"decision_boundary", "decision_boundary_epochs", "initial_weights"}
    assert {"loss_accuracy", "grad_norm_by_layer", "signal_at_init"} <= key
    assert "the figures that need it are skipped" in capsys.readouterr().err


def test_reading_a_record_never_runs_the_code_it_names(run_lab, tmp_path, capsys):
    # A record is shared and opened elsewhere: one whose config names a command (as a
    # _target_ may) is reported, listed and exported from its data alone.
    from initlab.cli import main

    out, _ = run_lab("trainer.epochs=2", **SMOKE)
    planted = tmp_path / "planted"
    summary = json.loads((out / "summary.json").read_text())
    for group in ("act", "init", "data"):
        summary["config"][group] = {**summary["config"][group], "name": "custom",
                                    "_target_": "os.system", "command": f"touch {planted}"}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text(yaml.safe_dump(summary["config"]))
    assert main(["report", str(out)]) == 0
    assert main(["list", str(tmp_path)]) == 0
    assert main(["export", "tensorboard", str(out)]) in (0, 1)  # 1: no tensorboard extra
    assert not planted.exists()
    printed = capsys.readouterr()
    assert "os.system(command=" in printed.out  # shown by its name
    assert "act._target_=os.system is code a record names, never run by a reader" in printed.err


# ------------------------------------------------------------------ the real CLI
@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A user's folder with their own mypkg.py (found there, as `python -m` would), and
    initlab's tests on PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "mypkg.py").write_text(f"from {CC} import Swish, two_rings  # noqa: F401\n")
    return tmp_path


@pytest.mark.slow
def test_a_cli_run_with_all_three_records_and_names_them(user_folder):
    result = initlab_cli("run", "-cn", "smoke", "act=custom", "act._target_=mypkg.Swish",
                         "act.beta=2", "init=custom", f"init._target_={CC}.scaled_normal_",
                         "init.scale=1.2", "data=custom", "data._target_=mypkg.two_rings",
                         "report.figures=none", "trainer.progress=false",
                         f"hydra.run.dir={user_folder / 'run'}", cwd=user_folder)
    assert result.returncode == 0, result.stderr
    run_dir = user_folder / "run"
    config = read_summary(run_dir)["config"]
    hydra_config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    for c in (config, hydra_config):
        assert c["act"] == {"name": "custom", "_target_": "mypkg.Swish", "beta": 2}
        assert c["init"]["_target_"] == f"{CC}.scaled_normal_" and c["init"]["scale"] == 1.2
        assert c["data"]["_target_"] == "mypkg.two_rings"
    table = (run_dir / "tables" / "config.txt").read_text()
    for name in ("mypkg.Swish(beta=2)", f"{CC}.scaled_normal_(scale=1.2)", "mypkg.two_rings()"):
        assert name in table and name in result.stdout


@pytest.mark.parametrize("overrides, message", [
    (["act=custom", "act._target_=mypkg.Pool"], "act._target_=mypkg.Pool: mypkg has no attribute 'Pool'"),
    (["act=custom", f"act._target_={CC}.Softmax"], "is not elementwise"),
    (["init=custom", f"init._target_={CC}.init_from_the_global_stream"], "draw every random number"),
    (["data=custom", f"data._target_={CC}.data_with_three_classes"], "labels other than 0 and 1"),
])
@pytest.mark.slow
def test_a_bad_target_fails_the_cli_in_one_line(user_folder, overrides, message):
    result = initlab_cli("run", "-cn", "smoke", *overrides, f"hydra.run.dir={user_folder / 'run'}",
                         cwd=user_folder)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (user_folder / "run").exists()  # refused before any folder


def test_a_module_that_exits_on_import_is_named_not_obeyed(tmp_path, monkeypatch):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(custom.ComponentError,
                       match=r"exits_on_import\.Act: its module called sys\.exit\(7\) on import"):
        custom.resolve("act._target_", "exits_on_import.Act")
