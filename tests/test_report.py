"""`initlab report` on runs and bad paths, the per-run figure set, and the recorders and
helpers behind the new figures (activation histograms, weight quantiles, model copies at
log epochs), checked against independent references.
"""

import csv
import shutil
from collections import defaultdict

import numpy as np
import pytest
import torch

from initlab.record import EPOCH_CHECKPOINTS, read_record
from initlab.recorders import histograms, spread_log_epochs
from initlab.report.activation_figures import rebin
from tests.conftest import initlab_cli

SMALL_NET_FIGURES = {
    "loss_accuracy", "grad_norm_by_layer", "grad_norm_over_time", "weights_over_time",
    "initial_weights", "decision_boundary", "activation_stats", "activation_histograms",
    "weight_distribution", "decision_boundary_epochs", "signal_at_init",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One in-process smoke run (3-layer net, 20 epochs, log every 5) for read-only tests."""
    from initlab.run import run
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("smoke") / "run"
    run(compose_config("trainer.progress=false", config_name="smoke"), out, quiet=True)
    from rich.console import Console

    from initlab.report import render_run

    render_run(out, console=Console(quiet=True), figures="full", tables="full")
    return out


def figure_names(run_dir, suffix=".png"):
    return {p.name[: -len(suffix)] for p in (run_dir / "figures").glob(f"*{suffix}")}


@pytest.mark.slow
def test_a_run_has_every_figure_and_report_restores_deleted_ones(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    assert figure_names(run_dir) == SMALL_NET_FIGURES
    shutil.rmtree(run_dir / "figures")
    shutil.rmtree(run_dir / "tables")
    result = initlab_cli("report", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert figure_names(run_dir) == SMALL_NET_FIGURES
    assert (run_dir / "tables" / "metrics.txt").exists()
    assert "Final metrics" in result.stdout


@pytest.mark.slow
def test_report_writes_the_requested_format_and_dpi(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    result = initlab_cli("report", str(run_dir), "--format", "pdf", "--dpi", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert figure_names(run_dir, ".pdf") == SMALL_NET_FIGURES
    small = initlab_cli("report", str(run_dir), "--dpi", "40", cwd=tmp_path)
    assert small.returncode == 0
    from matplotlib.image import imread

    # 40 dpi against the 120 of the run: a third of the pixels per side.
    assert imread(run_dir / "figures" / "loss_accuracy.png").shape[1] < 0.5 * imread(
        smoke_run / "figures" / "loss_accuracy.png").shape[1]


def _not_a_record(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file.txt").write_text("hello")
    (tmp_path / "bad_json").mkdir()
    (tmp_path / "bad_json" / "summary.json").write_text("{not json")


BAD_PATHS = [
    ("missing", "does not exist"),
    ("empty", "is not an initlab run, sweep or folder of them"),
    ("a_file.txt", "is a file"),
    ("bad_json", "is not valid JSON"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, message", BAD_PATHS, ids=[n for n, _ in BAD_PATHS])
def test_a_path_that_is_not_a_record_gets_a_one_line_error(tmp_path, name, message):
    _not_a_record(tmp_path)
    result = initlab_cli("report", str(tmp_path / name), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.slow
def test_a_corrupted_csv_gets_a_one_line_error(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    (run_dir / "grad_norms.csv").write_text("step,epoch,param,norm\n0,1,fc1.weight,abc\n")
    result = initlab_cli("report", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "grad_norms.csv: line 2: column 'norm' holds 'abc', not a number" in result.stderr.strip()


# ------------------------------------------------------------------ the new record files
def test_activation_histograms_count_every_activation_of_every_log_epoch(smoke_run):
    record = read_record(smoke_run)
    totals = defaultdict(float)
    for row in record.activation_hists:
        totals[(row["epoch"], row["layer"])] += row["count"]
    n_train, width = 120, 4  # conf/smoke.yaml
    assert sorted({e for e, _ in totals}) == [0, 5, 10, 15, 20]
    assert {layer for _, layer in totals} == {"fc1", "fc2"}
    assert all(t == n_train * width for t in totals.values())


def test_histograms_on_their_own_range_match_numpy():
    a = torch.tensor([[0.0, 0.0, 1.0], [2.5, float("nan"), float("inf")], [3.0, -1.0, 0.5]])
    out = histograms(a[None], bins=4)[0]
    finite = a[torch.isfinite(a)].numpy()
    counts, edges = np.histogram(finite, bins=4)
    assert out[:2].tolist() == [edges[0], edges[-1]]
    assert out[2:].tolist() == counts.tolist()
    constant = histograms(torch.full((1, 5), 0.25), bins=3)[0]
    assert constant.tolist() == [0.25, 0.25, 5.0, 0.0, 0.0]


def test_rebin_keeps_every_count():
    edges = np.linspace(-1, 3, 9)
    moved = rebin(0.0, 2.0, [4, 0, 6, 2], edges)
    assert moved.sum() == pytest.approx(12)
    assert moved[:2].sum() == 0 and moved[6:].sum() == 0  # nothing outside [0, 2]
    assert rebin(1.2, 1.2, [3, 0], edges).tolist() == [0, 0, 0, 0, 3, 0, 0, 0]


def test_weight_quantiles_match_torch_on_the_initial_weights(smoke_run):
    record = read_record(smoke_run)
    init = torch.load(smoke_run / "checkpoints" / "init.pt", weights_only=True)
    at_init = {r["param"]: r for r in record.weight_stats if r["epoch"] == 0}
    assert set(at_init) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for name, row in at_init.items():
        w = init[name].flatten()
        assert row["min"] == pytest.approx(w.min().item())
        assert row["max"] == pytest.approx(w.max().item())
        assert row["p50"] == pytest.approx(torch.quantile(w, 0.5).item())


def test_model_copies_at_log_epochs_start_from_the_initial_model(smoke_run):
    states = torch.load(smoke_run / EPOCH_CHECKPOINTS, weights_only=True)
    assert sorted(states) == spread_log_epochs(5, 20, 6) == [0, 5, 10, 15, 20]
    init = torch.load(smoke_run / "checkpoints" / "init.pt", weights_only=True)
    last = torch.load(smoke_run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(states[0][k], init[k]) for k in init)
    assert all(torch.equal(states[20][k], last[k]) for k in last)


def test_spread_log_epochs_keeps_first_and_last():
    assert spread_log_epochs(50, 2000, 6) == [0, 400, 800, 1200, 1600, 2000]
    assert spread_log_epochs(20, 30, 6) == [0, 20, 30]
    assert spread_log_epochs(1, 1, 6) == [0, 1]


@pytest.mark.slow
def test_a_deep_net_gets_the_gradient_heat_map(run_lab):
    from initlab.report.figures import render_figures

    run_dir, _ = run_lab("model.depth=10", "model.width=3", "trainer.epochs=4",
                         "trainer.log_every=2", config_name="smoke")
    render_figures(read_record(run_dir), "full")  # a run draws the key set at most
    names = figure_names(run_dir)
    assert "grad_norm_heatmap" in names
    assert names >= SMALL_NET_FIGURES - {"weights_over_time"}
    with (run_dir / "grad_norms.csv").open() as f:
        assert {r["param"] for r in csv.DictReader(f)} >= {"fc10.weight", "fc1.bias"}


# ------------------------------------------------------ what a newcomer reads (issue 24)
def test_tables_say_relu_and_where_the_progress_bar_ended(smoke_run):
    from initlab.report.tables import config_table, metrics_table, table_text

    record = read_record(smoke_run)
    config = table_text(config_table(record))
    assert "│ relu " in config and "name=relu" not in config
    metrics = table_text(metrics_table(record))
    last = record.metrics[-1]
    assert f"epoch {last['epoch']} dev" in metrics and f"{last['dev_acc']:.3f}" in metrics
    assert metrics_table(record).caption == "* before the epoch's step, as metrics.csv logs it"


def test_a_jobs_line_fits_80_columns_and_names_no_folder(smoke_run):
    from initlab.report import one_line, run_findings

    record = read_record(smoke_run)
    label = "job 12 " + " ".join(f"model.layer_{k}.some_long_key=value_{k}" for k in range(4))
    line = one_line(record, run_findings(record), label, width=80)
    assert len(line) <= 80 and str(smoke_run) not in line
    assert line.startswith("job 12 model.") and "…: completed; test acc " in line
    alone = one_line(record, run_findings(record))
    assert alone.endswith(f"-> {smoke_run}") and "after 20 epochs" in alone


def test_the_progress_of_a_big_sweep_is_one_line_a_tenth(capsys):
    from initlab.report.compare import _clock, _JobProgress

    progress = _JobProgress(40)
    for k in range(40):
        progress.job_done("diverged" if k == 7 else "completed")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and all(len(line) <= 80 for line in lines)
    assert lines[-1].startswith("jobs 40/40: 39 completed, 1 diverged;") and "ETA 0:00" in lines[-1]
    assert (_clock(61), _clock(3725)) == ("1:01", "1:02:05")
