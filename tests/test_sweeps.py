"""Sweep comparison through real sweeps of the `initlab` command (Hydra's basic launcher).

The sweeps are tiny (smoke config, 3 epochs, gradient norms only) so the suite stays fast;
what they check is the comparison a user gets at the sweep root: comparison.csv, the
printed tables, the overlay figures, failed jobs, seed bands and finding frequencies.
"""

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from initlab.report.compare import distinguishing_labels, render_sweep
from tests.conftest import initlab_cli

# Small and quick; gradient norms and metrics are all the comparison needs.
TINY = ("-cn", "smoke", "trainer.epochs=3", "trainer.log_every=1",
        "trainer.recorders=[grad_norms]", "trainer.progress=false")
COMPARISON_FIGURES = {"grad_norm_by_layer.png", "loss_accuracy.png", "final_accuracy.png"}


def sweep(tmp_path: Path, *overrides: str, launcher: str | None = None):
    """Run `initlab run -m TINY overrides` into tmp_path/sweep; returns (result, sweep_dir)."""
    sweep_dir = tmp_path / "sweep"
    extra = [f"hydra/launcher={launcher}"] if launcher else []
    result = initlab_cli("run", "-m", *TINY, *overrides, *extra, f"hydra.sweep.dir={sweep_dir}",
                         cwd=tmp_path)
    return result, sweep_dir


def read_comparison(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "comparison.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def assert_complete_comparison(sweep_dir: Path, labels: list[str]) -> list[dict[str, str]]:
    """One row per job, labelled by its overrides, with metrics and every gradient norm."""
    rows = read_comparison(sweep_dir)
    assert [r["label"] for r in rows] == labels
    for row in rows:
        assert row["status"] == "completed", row
        for split in ("train", "dev", "test"):
            assert 0 <= float(row[f"{split}_acc"]) <= 1
            assert math.isfinite(float(row[f"{split}_loss"]))
        grads = {k: v for k, v in row.items() if k.startswith(("first_grad_norm:",
                                                                "last_grad_norm:"))}
        # smoke model: fc1..fc3, weight and bias, first and last step
        assert len(grads) == 12 and all(float(v) >= 0 for v in grads.values()), grads
    assert {p.name for p in (sweep_dir / "figures").iterdir()} == COMPARISON_FIGURES
    assert (sweep_dir / "tables" / "comparison.txt").exists()
    return rows


@pytest.fixture(scope="module")
def act_sweep(tmp_path_factory):
    """One real two-job sweep shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("act_sweep")
    result, sweep_dir = sweep(tmp, "act=sigmoid,relu")
    return result, sweep_dir


def test_basic_sweep_ends_with_a_complete_comparison(act_sweep):
    result, sweep_dir = act_sweep
    assert result.returncode == 0, result.stderr
    rows = assert_complete_comparison(sweep_dir, ["act=sigmoid", "act=relu"])
    assert [r["job"] for r in rows] == ["0", "1"]
    assert "Sweep comparison" in result.stdout and "act=sigmoid" in result.stdout
    table = (sweep_dir / "tables" / "comparison.txt").read_text()
    assert "act=relu" in table and "completed" in table


@pytest.mark.slow
def test_report_on_a_sweep_rebuilds_its_comparison(act_sweep, tmp_path):
    _, original = act_sweep
    sweep_dir = tmp_path / "copy"
    shutil.copytree(original, sweep_dir)
    shutil.rmtree(sweep_dir / "figures")
    (sweep_dir / "comparison.csv").unlink()
    result = initlab_cli("report", str(sweep_dir), "--format", "svg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_comparison(sweep_dir) == read_comparison(original)
    assert {p.name for p in (sweep_dir / "figures").iterdir()} == {
        n.replace(".png", ".svg") for n in COMPARISON_FIGURES}


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_still_compares_the_others(tmp_path):
    # model.depth=0 is invalid for that job only: Hydra runs job 0, job 1 fails.
    result, sweep_dir = sweep(tmp_path, "model.depth=2,0")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    rows = read_comparison(sweep_dir)
    assert [(r["label"], r["status"]) for r in rows] == [
        ("model.depth=2", "completed"), ("model.depth=0", "failed")]
    assert "model.depth must be >= 1" in rows[1]["error"]
    assert rows[1]["test_acc"] == "" and float(rows[0]["test_acc"]) > 0
    assert "failed" in result.stdout and "Sweep comparison" in result.stdout
    assert {p.name for p in (sweep_dir / "figures").iterdir()} == COMPARISON_FIGURES


def _add_finding(job_dir: Path, code: str) -> None:
    # The diagnosis of a run (issue 4) lands in summary.json in this shape.
    path = job_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary.setdefault("diagnosis", []).append({"code": code, "layers": ["fc1"]})
    path.write_text(json.dumps(summary))


@pytest.mark.slow
def test_a_seed_sweep_reports_mean_spread_and_how_often_each_finding_occurs(tmp_path):
    result, sweep_dir = sweep(tmp_path, "seed=0,1,2")
    assert result.returncode == 0, result.stderr
    assert "Across seeds" in result.stdout
    rows = read_comparison(sweep_dir)
    accs = [float(r["test_acc"]) for r in rows]
    with (sweep_dir / "seed_summary.csv").open(newline="") as f:
        (group,) = list(csv.DictReader(f))
    assert int(group["seeds"]) == 3 and int(group["finished"]) == 3
    assert float(group["test_acc_mean"]) == pytest.approx(sum(accs) / 3)
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert float(group["test_acc_std"]) == pytest.approx(std)

    # Findings written by the diagnosis are counted per seed; runs without one count as none.
    _add_finding(sweep_dir / "0", "dead_units")
    _add_finding(sweep_dir / "2", "dead_units")
    _add_finding(sweep_dir / "2", "vanishing_gradients")
    render_sweep(sweep_dir)
    rows = read_comparison(sweep_dir)
    assert [r["findings"] for r in rows] == ["dead_units", "", "dead_units vanishing_gradients"]
    seed_text = (sweep_dir / "tables" / "seed_summary.txt").read_text()
    assert "dead_units in 2 of 3 seeds" in seed_text
    assert "vanishing_gradients in 1 of 3 seeds" in seed_text


def test_labels_name_only_the_overrides_that_differ():
    labels, shared = distinguishing_labels([
        ["experiment=dead_relu", "act=relu"],
        ["experiment=dead_relu", "act=lrelu"],
    ])
    assert labels == ["act=relu", "act=lrelu"] and shared == "experiment=dead_relu"
    assert distinguishing_labels([["act=relu"]]) == (["act=relu"], "act=relu")
    assert distinguishing_labels([[], ["seed=1"]])[0] == ["defaults", "seed=1"]


@pytest.mark.slow
def test_report_on_a_folder_lists_runs_and_sweeps_newest_first(act_sweep, run_lab, tmp_path):
    _, sweep_dir = act_sweep
    outputs = tmp_path / "outputs"
    shutil.copytree(sweep_dir, outputs / "multirun" / "older")
    run_dir, _ = run_lab(config_name="smoke")
    shutil.copytree(run_dir, outputs / "runs" / "newer")
    result = initlab_cli("report", str(outputs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "runs/newer" in out and "multirun/older" in out
    assert out.index("runs/newer") < out.index("multirun/older")
    assert "2 jobs: 2 completed" in out and "act=sigmoid,relu" in out
    listing = initlab_cli("list", str(outputs), cwd=tmp_path)
    assert listing.returncode == 0 and "runs/newer" in listing.stdout


def test_a_new_comparison_leaves_no_file_of_an_earlier_one(act_sweep, tmp_path):
    """Files an earlier comparison of the folder wrote (a seed sweep's summaries, a preset's
    paper table) and this one does not are removed, so nothing stale is read or linked."""
    from initlab.report.compare import SWEEP_FILES

    _, original = act_sweep
    sweep_dir = tmp_path / "copy"
    shutil.copytree(original, sweep_dir)
    stale = ("seed_summary.csv", "finding_rates.csv", "paper.csv")
    assert set(stale) < set(SWEEP_FILES)
    for name in stale:
        (sweep_dir / name).write_text("stale\n")
    # A figure this sweep does not draw (a grid's phase map, a preset's claim) and its table.
    stale += ("figures/phase_map.png", "figures/claim.svg", "tables/paper.txt")
    for name in stale[3:]:
        (sweep_dir / name).write_bytes(b"stale")
    render_sweep(sweep_dir)
    assert not [name for name in stale if (sweep_dir / name).exists()]
    assert (sweep_dir / "figures" / "grad_norm_by_layer.png").exists()
    page = (sweep_dir / "index.html").read_text()
    assert "comparison.csv" in page and not [name for name in stale if name in page]


def test_unfinished_and_record_less_jobs_are_listed_not_fatal(act_sweep, tmp_path):
    _, original = act_sweep
    sweep_dir = tmp_path / "copy"
    shutil.copytree(original, sweep_dir)
    # Job 2 never wrote a record (killed before starting); job 1 is still running.
    multirun = sweep_dir / "multirun.yaml"
    multirun.write_text(multirun.read_text().replace("act=sigmoid,relu", "act=sigmoid,relu,tanh"))
    (sweep_dir / "2" / ".hydra").mkdir(parents=True)
    overrides = (sweep_dir / "0" / ".hydra" / "overrides.yaml").read_text()
    (sweep_dir / "2" / ".hydra" / "overrides.yaml").write_text(
        overrides.replace("act=sigmoid", "act=tanh"))
    summary = json.loads((sweep_dir / "1" / "summary.json").read_text())
    (sweep_dir / "1" / "summary.json").write_text(json.dumps(
        {k: summary[k] for k in ("seed", "config", "device")} | {"status": "running"}))
    render_sweep(sweep_dir)
    rows = read_comparison(sweep_dir)
    assert [(r["label"], r["status"]) for r in rows] == [
        ("act=sigmoid", "completed"), ("act=relu", "running"), ("act=tanh", "no record")]
    assert float(rows[0]["test_acc"]) > 0 and rows[1]["test_acc"] == ""


@pytest.mark.slow
def test_reading_a_sweep_does_not_need_torch(act_sweep, tmp_path):
    import subprocess
    import sys

    _, original = act_sweep
    code = ("import sys; from initlab.report.compare import read_sweep\n"
            f"jobs, _ = read_sweep({str(original)!r})\n"
            "assert len(jobs) == 2 and all(j.grad_first for j in jobs)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def _figure_bytes(sweep_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted((sweep_dir / "figures").iterdir())}


@pytest.mark.parametrize("way", ["forked", "no fork", "the copy fails"])
def test_comparison_figures_are_the_same_drawn_aside_or_here(act_sweep, tmp_path, monkeypatch, way):
    """render_sweep draws its figures in a forked copy while it prints the tables; without
    a fork, or when the copy fails, it draws them itself: the same files either way."""
    import os

    from initlab.report import compare

    _, original = act_sweep
    sweep_dir = tmp_path / "copy"
    shutil.copytree(original, sweep_dir)
    shutil.rmtree(sweep_dir / "figures")
    parent = os.getpid()
    if way == "no fork":
        monkeypatch.setattr(compare.os, "fork", lambda: (_ for _ in ()).throw(OSError("no fork")))
    elif way == "the copy fails":
        draw = compare._FiguresAside._draw

        def fail_in_the_copy(self, names):
            if os.getpid() != parent:
                raise RuntimeError("copy failed")
            return draw(self, names)

        monkeypatch.setattr(compare._FiguresAside, "_draw", fail_in_the_copy)
    written = render_sweep(sweep_dir)
    figures = [p.name for p in written if p.parent.name == "figures"]
    assert figures == ["grad_norm_by_layer.png", "loss_accuracy.png", "final_accuracy.png"]
    assert set(_figure_bytes(sweep_dir)) == set(COMPARISON_FIGURES)
    assert all(size > 1000 for size in _figure_bytes(sweep_dir).values())


def test_wilson_intervals_are_the_published_ones():
    """Values from Newcombe (1998), Table I (95%, Wilson score method without continuity
    correction): 81/263, 15/148, 0/20, 1/29."""
    from initlab.report.compare import wilson_interval

    for (k, n), (low, high) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                                (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}.items():
        ours = wilson_interval(k, n)
        assert ours == pytest.approx((low, high), abs=1e-4), (k, n)


def test_quantiles_and_slopes_are_numpys():
    import numpy as np

    from initlab.report.compare import least_squares_slope, quantile

    rng = np.random.default_rng(0)
    values = rng.normal(size=37).tolist()
    for q in (0.05, 0.25, 0.5, 0.95):
        assert quantile(values + [math.nan], q) == pytest.approx(float(np.quantile(values, q)))
    x, y = np.arange(6.0), rng.normal(size=6)
    assert least_squares_slope(list(zip(x, y))) == pytest.approx(float(np.polyfit(x, y, 1)[0]))
    assert math.isnan(least_squares_slope([(1.0, 2.0)]))


@pytest.mark.slow
def test_seed_statistics_equal_those_computed_from_the_job_files(tmp_path):
    import statistics

    import numpy as np

    result, sweep_dir = sweep(tmp_path, "seed=0,1,2,3")
    assert result.returncode == 0, result.stderr
    with (sweep_dir / "seed_summary.csv").open(newline="") as f:
        (group,) = list(csv.DictReader(f))
    summaries = [json.loads((sweep_dir / str(k) / "summary.json").read_text()) for k in range(4)]
    accs = [s["metrics"]["test"]["acc"] for s in summaries]
    assert float(group["test_acc_median"]) == pytest.approx(statistics.median(accs))
    last_dev = []
    for k in range(4):
        with (sweep_dir / str(k) / "metrics.csv").open(newline="") as f:
            last_dev.append(float(list(csv.DictReader(f))[-1]["dev_acc"]))
    assert float(group["last_dev_acc_mean"]) == pytest.approx(statistics.fmean(last_dev))
    assert float(group["last_dev_acc_median"]) == pytest.approx(statistics.median(last_dev))
    slopes = []
    for s in summaries:
        first = {p: v for p, v in s["grad_norms"]["first"].items() if p.endswith(".weight")}
        layers = [int(p[2:].split(".")[0]) for p in first]
        slopes.append(float(np.polyfit(layers, [math.log10(v) for v in first.values()], 1)[0]))
    assert float(group["grad_slope_mean"]) == pytest.approx(statistics.fmean(slopes))
    rates = (sweep_dir / "finding_rates.csv").read_text().splitlines()
    assert rates[0] == "group,overrides,code,count,seeds,rate,ci95_low,ci95_high"


@pytest.mark.slow
def test_a_big_sweep_prints_a_progress_line_not_a_line_per_job(tmp_path):
    result, sweep_dir = sweep(tmp_path, "seed=range(0,21)", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("job ")]
    progress = [line for line in lines if line.startswith("jobs ")]
    assert 1 <= len(progress) <= 11 and progress[-1].startswith("jobs 21/21: 21 completed;")
    assert "21 jobs: 21 completed" in lines and "Sweep comparison (" not in result.stdout
    assert lines[-1] == f"Report page: {(sweep_dir / 'index.html').resolve().as_uri()}"
    assert all(len(line) <= 120 for line in lines)  # initlab_cli's terminal is 120 wide
    assert (sweep_dir / "tables" / "comparison.txt").read_text().count("completed") == 21


@pytest.mark.slow
def test_compare_puts_runs_and_sweeps_of_any_shape_in_one_comparison(act_sweep, tmp_path):
    from rich.console import Console

    from initlab.run import run
    from tests.conftest import compose_config

    _, sweep_dir = act_sweep
    shallow = tmp_path / "shallow"  # another shape, another time, another primary config
    run(compose_config(*TINY[2:], "model.depth=2", config_name="smoke"), shallow, quiet=True)
    (shallow / ".hydra").mkdir()  # the labels come from the overrides, as Hydra writes them
    overrides = (*TINY[2:], "model.depth=2")
    (shallow / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    out = tmp_path / "compared"
    written = render_sweep(out, console=Console(quiet=True), runs=[sweep_dir, shallow])
    rows = read_comparison(out)
    assert [r["job"] for r in rows] == ["sweep/0", "sweep/1", "shallow"]
    # The sweep's primary config is known from its Hydra files; this run was made without.
    assert [r["label"] for r in rows] == ["-cn smoke act=sigmoid", "-cn smoke act=relu",
                                          "model.depth=2"]
    assert rows[2]["first_grad_norm:fc3.weight"] == ""  # a 2-layer net has no fc3: missing
    assert float(rows[0]["first_grad_norm:fc3.weight"]) > 0
    assert {p.name for p in (out / "figures").iterdir()} == COMPARISON_FIGURES
    page = (out / "index.html").read_text()
    assert "<h1>initlab comparison</h1>" in page and "../sweep/0/index.html" not in page
    assert not (shallow / "index.html").exists() and out / "index.html" in written
    # `initlab report` of the comparison's folder compares the same runs again.
    from initlab.report import render_path

    (out / "comparison.csv").unlink()
    render_path(out, console=Console(quiet=True))
    assert [r["job"] for r in read_comparison(out)] == ["sweep/0", "sweep/1", "shallow"]
    # ... and `initlab list` shows it as a comparison of the two, not as nothing.
    from initlab.report import list_path

    console = Console(record=True, width=120)
    list_path(tmp_path, console)
    listing = console.export_text()
    assert "comparison of 2 runs and sweeps" in listing and "compare sweep shallow" in listing


@pytest.mark.slow
def test_compare_of_something_that_is_not_a_record_is_one_line(tmp_path):
    result = initlab_cli("compare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"initlab compare: error: {tmp_path / 'nowhere'} is neither a run (no summary.json) nor a "
        "sweep (no multirun.yaml): it does not exist"]
