"""`initlab export tensorboard`: the event files are read back with TensorBoard's own reader
and compared, number by number, with the record's CSV files (read here with the csv module,
not through initlab), for a run, a re-export, a diverged run and a real 2-job sweep; the
command's one-line errors through the real `initlab` command or `initlab.cli.main`."""

import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from initlab import cli
from initlab.run import run
from tests.conftest import compose_config, initlab_cli

SMALL = ("trainer.progress=false", "report.figures=none", "report.tables=line", "report.quiet=true")


def make_run(out: Path, *overrides: str) -> Path:
    run(compose_config(*SMALL, *overrides, config_name="smoke"), out, quiet=True)
    return out


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("export") / "run")


def rows(run_dir: Path, name: str) -> list[dict[str, str]]:
    with (run_dir / name).open(newline="") as f:
        return list(csv.DictReader(f))


def events(logdir: Path):
    """Everything in ``logdir``'s event files, as TensorBoard loads it (0: keep every event)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    accumulator = ea.EventAccumulator(str(logdir), size_guidance={
        ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0, ea.COMPRESSED_HISTOGRAMS: 0})
    accumulator.Reload()
    return accumulator


def same_float32(recorded: str | float, logged: float) -> bool:
    """A record's number and TensorBoard's float32 copy of it (NaN equals NaN)."""
    a, b = np.float32(float(recorded)), np.float32(logged)
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def scalars(acc, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def session_hparams(acc) -> dict:
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    return {k: (v.string_value if v.WhichOneof("kind") == "string_value" else v.number_value)
            for k, v in start.hparams.items()}


def test_a_runs_events_hold_its_metrics_gradients_histograms_and_hparams(smoke_run, tmp_path):
    pytest.importorskip("tensorboard")
    from initlab.export import export_tensorboard

    written = export_tensorboard(smoke_run, console=_quiet())
    assert written == [smoke_run / "tensorboard"]
    acc = events(smoke_run / "tensorboard")

    metrics = rows(smoke_run, "metrics.csv")
    for column, tag in [("train_loss", "loss/train"), ("dev_loss", "loss/dev"),
                        ("train_acc", "accuracy/train"), ("dev_acc", "accuracy/dev")]:
        logged = scalars(acc, tag)
        assert sorted(logged) == [int(r["epoch"]) for r in metrics]
        assert all(same_float32(r[column], logged[int(r["epoch"])]) for r in metrics), tag

    norms = defaultdict(dict)
    for r in rows(smoke_run, "grad_norms.csv"):
        norms[r["param"]][int(r["step"])] = r["norm"]
    assert set(norms) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}
    for param, by_step in norms.items():
        logged = scalars(acc, f"grad_norm/{param}")
        assert sorted(logged) == sorted(by_step)
        assert all(same_float32(v, logged[s]) for s, v in by_step.items()), param

    bins = defaultdict(list)
    for r in rows(smoke_run, "activation_hists.csv"):
        bins[r["layer"], int(r["epoch"])].append(r)
    assert {layer for layer, _ in bins} == {"fc1", "fc2"}
    for layer in ("fc1", "fc2"):
        logged = {h.step: h.histogram_value for h in acc.Histograms(f"activations/{layer}")}
        assert sorted(logged) == sorted(epoch for lay, epoch in bins if lay == layer)
        for epoch, histogram in logged.items():
            csv_bins = sorted(bins[layer, epoch], key=lambda r: int(r["bin"]))
            assert list(histogram.bucket) == [float(r["count"]) for r in csv_bins]
            assert list(histogram.bucket_limit) == [float(r["high"]) for r in csv_bins]
            assert histogram.min == float(csv_bins[0]["low"])
            assert histogram.num == sum(float(r["count"]) for r in csv_bins)

    # weights.csv (a small model): every weight of every parameter at every log epoch.
    weights = defaultdict(list)
    for r in rows(smoke_run, "weights.csv"):
        weights[r["param"], int(r["epoch"])].append(float(r["value"]))
    for (param, epoch), values in weights.items():
        histogram = {h.step: h.histogram_value for h in acc.Histograms(f"weights/{param}")}[epoch]
        assert histogram.num == len(values) == sum(histogram.bucket)
        assert (histogram.min, histogram.max) == (min(values), max(values))

    summary = json.loads((smoke_run / "summary.json").read_text())
    hparams = session_hparams(acc)
    config = summary["config"]
    assert hparams["act.name"] == config["act"]["name"]
    assert hparams["init.name"] == config["init"]["name"]
    assert hparams["optim.lr"] == pytest.approx(config["optim"]["lr"])
    assert hparams["model.width"] == config["model"]["width"]
    assert hparams["seed"] == config["seed"] and hparams["status"] == "completed"
    assert not any(k.startswith("report.") for k in hparams)
    for split in ("test", "dev", "train"):
        for key in ("acc", "loss"):
            (value,) = scalars(acc, f"hparam/{split}_{key}").values()
            assert same_float32(summary["metrics"][split][key], value)
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")


def test_exporting_again_replaces_the_earlier_export(smoke_run, tmp_path):
    pytest.importorskip("tensorboard")
    from initlab.export import export_tensorboard

    out = tmp_path / "tb"
    export_tensorboard(smoke_run, out=out, console=_quiet())
    export_tensorboard(smoke_run, out=out, console=_quiet())
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert len(events(out).Scalars("loss/train")) == len(rows(smoke_run, "metrics.csv"))


def test_a_diverged_run_exports_its_nan_and_inf_and_weights_from_checkpoints(tmp_path):
    pytest.importorskip("tensorboard")
    import torch

    from initlab.export import export_tensorboard

    # A huge learning rate overflows within a few epochs; no weights.csv (weights_max_params=0),
    # so the weight histograms come from checkpoints/epochs.pt.
    run_dir = make_run(tmp_path / "diverged", "act=lrelu", "optim=sgd", "optim.lr=100",
                       "trainer.epochs=50", "trainer.weights_max_params=0")
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
    assert not (run_dir / "weights.csv").exists()
    export_tensorboard(run_dir, console=_quiet())
    acc = events(run_dir / "tensorboard")

    metrics = rows(run_dir, "metrics.csv")
    assert not math.isfinite(float(metrics[-1]["train_loss"]))
    logged = scalars(acc, "loss/train")
    assert all(same_float32(r["train_loss"], logged[int(r["epoch"])]) for r in metrics)
    norms = [r for r in rows(run_dir, "grad_norms.csv") if r["param"] == "fc1.weight"]
    logged = scalars(acc, "grad_norm/fc1.weight")
    assert any(not math.isfinite(float(r["norm"])) for r in norms)
    assert all(same_float32(r["norm"], logged[int(r["step"])]) for r in norms)

    states = torch.load(run_dir / "checkpoints" / "epochs.pt", weights_only=True)
    by_epoch = {h.step: h.histogram_value for h in acc.Histograms("weights/fc2.weight")}
    assert sorted(by_epoch) == sorted(states)
    for epoch, state in states.items():
        values = state["fc2.weight"].double()
        finite = values[torch.isfinite(values)]
        assert by_epoch[epoch].num == finite.numel()
        assert (by_epoch[epoch].min, by_epoch[epoch].max) == (finite.min().item(), finite.max().item())
    # A layer whose every activation is NaN/Inf has nothing to bin: no histogram, no crash.
    counted = {int(r["epoch"]) for r in rows(run_dir, "activation_hists.csv")
               if r["layer"] == "fc2" and float(r["count"]) > 0}
    assert {h.step for h in acc.Histograms("activations/fc2")} == counted


@pytest.mark.slow
def test_a_sweep_exports_one_folder_per_job_named_by_its_overrides(tmp_path):
    pytest.importorskip("tensorboard")
    sweep_dir = tmp_path / "sweep"
    ran = initlab_cli("run", "-m", "-cn", "smoke", "act=sigmoid,relu", "trainer.epochs=3",
                      "trainer.progress=false", "report=minimal", f"hydra.sweep.dir={sweep_dir}",
                      cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = initlab_cli("export", "tensorboard", str(sweep_dir), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    out = sweep_dir / "tensorboard"
    assert f"-> {out}" in result.stdout
    assert f"tensorboard --logdir {out}" in result.stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["act=relu", "act=sigmoid"]
    for job, act in (("0", "sigmoid"), ("1", "relu")):
        acc = events(out / f"act={act}")
        metrics = rows(sweep_dir / job, "metrics.csv")
        logged = scalars(acc, "loss/dev")
        assert len(logged) == len(metrics) == 3
        assert all(same_float32(r["dev_loss"], logged[int(r["epoch"])]) for r in metrics)
        assert session_hparams(acc)["act.name"] == act

    # A job whose record was hand-edited is skipped, in one line; the others are exported.
    from rich.console import Console

    from initlab.export import export_tensorboard

    norms = sweep_dir / "1" / "grad_norms.csv"
    lines = norms.read_text().splitlines(keepends=True)
    norms.write_text("".join([lines[0], "0,1,fc1.weight\r\n", *lines[2:]]))
    console = Console(record=True, width=200)
    assert export_tensorboard(sweep_dir, console=console) == [out / "act=sigmoid"]
    printed = console.export_text()
    assert "skipped job 1: " in printed and "grad_norms.csv: line 2 has 3 cells" in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["act=sigmoid"]


@pytest.mark.slow
def test_a_bad_path_is_one_line(tmp_path):
    result = initlab_cli("export", "tensorboard", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"initlab export: error: {tmp_path / 'nowhere'} does not exist"


@pytest.mark.slow
def test_an_unknown_format_is_one_line_naming_the_formats(tmp_path):
    result = initlab_cli("export", "csv", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "unknown export format 'csv'" in line and "choose from: tensorboard" in line


@pytest.mark.parametrize("case, words", [
    ("file", "is a file"),
    ("not a record", "is neither a run folder (no summary.json) nor a sweep folder"),
    ("foreign out", "is not empty and holds no earlier initlab export"),
    ("no path", "the following arguments are required: PATH"),
])
def test_other_bad_input_is_one_line_and_writes_nothing(smoke_run, tmp_path, capsys, case, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    args = {"file": [str(tmp_path / "notes.txt")], "not a record": [str(tmp_path / "empty")],
            "foreign out": [str(smoke_run), "--out", str(foreign)], "no path": []}[case]
    try:
        code = cli.main(["export", "tensorboard", *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert (foreign / "keep.txt").read_text() == "mine" and list(foreign.iterdir()) == [foreign / "keep.txt"]
    assert list((tmp_path / "empty").iterdir()) == []


def test_without_the_tensorboard_package_it_says_what_to_install(smoke_run, tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import tensorboard` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "tb"
    code = cli.main(["export", "tensorboard", str(smoke_run), "--out", str(out)])
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert code == 1 and "pip install -e '.[tensorboard]'" in line and "Traceback" not in line
    assert not out.exists()


def _quiet():
    from rich.console import Console

    return Console(quiet=True)
