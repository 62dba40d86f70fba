"""A run that blows up stops cleanly at the first non-finite loss or gradient, keeps a
complete record up to that point, and its diagnosis names where it broke. The check costs
no extra host copy per step."""

import csv
import json
import math

import pytest
import torch

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


# ------------------------------------------------------------------ members of one stack
def _stack(tmp_path, *overrides):
    from initlab.engine import train_group
    from tests.conftest import compose_config

    cfgs = [compose_config("init=normal", o, "trainer.progress=false", config_name="smoke")
            for o in overrides]
    dirs = [tmp_path / str(i) for i in range(len(cfgs))]
    return dirs, train_group(cfgs, dirs)


def test_a_member_overflowing_at_init_diverges_alone_and_keeps_its_record(tmp_path):
    from initlab.record import read_record

    dirs, summaries = _stack(tmp_path, "init.std=1.0", "init.std=1e300")
    assert [s["status"] for s in summaries] == ["completed", "diverged"]
    assert summaries[0]["epochs_run"] == 20 and summaries[1]["epochs_run"] == 1
    record = read_record(dirs[1])  # complete and readable, NaN and all
    assert record.summary["init_signal"]["theory"] is None  # past float64: no prediction
    assert "non_finite" in {f["code"] for f in record.summary["diagnosis"]}


def test_a_member_whose_record_fails_fails_alone(tmp_path, monkeypatch):
    from initlab.job import MemberRecord

    finish = MemberRecord.finish

    def broken(self, group, i, *args):
        if i == 1:
            raise OverflowError("planted")
        return finish(self, group, i, *args)

    monkeypatch.setattr(MemberRecord, "finish", broken)
    dirs, summaries = _stack(tmp_path, "seed=0", "seed=1", "seed=2")
    assert [s["status"] for s in summaries] == ["completed", "failed", "completed"]
    on_disk = json.loads((dirs[1] / "summary.json").read_text())
    assert on_disk["status"] == "failed" and "OverflowError: planted" in on_disk["error"]
    assert "OverflowError: planted" in (dirs[1] / "error.txt").read_text()
