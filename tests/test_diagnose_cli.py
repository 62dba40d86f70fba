"""The diagnosis as a user meets it: at the end of `initlab run`, and from `initlab report DIR`
on a saved run, including one recorded before units.csv existed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from initlab.diagnose import NO_PROBLEMS
from tests._diagnose_support import run_quietly


def initlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_COLOR": "1", "COLUMNS": "120",
           "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("initlab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "initlab.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_a_healthy_run_ends_with_no_problems_found(tmp_path):
    result = initlab("run", "-cn", "smoke", "trainer.progress=false",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tail = result.stdout[result.stdout.index("Diagnosis"):]
    assert NO_PROBLEMS in tail
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["diagnosis"] == []
    assert NO_PROBLEMS in (tmp_path / "run" / "tables" / "diagnosis.txt").read_text()


@pytest.mark.slow
def test_report_rediagnoses_an_old_run_without_units_csv(tmp_path):
    torch.set_num_threads(1)
    run_dir = tmp_path / "old"
    run_quietly(run_dir, "experiment=dead_relu")
    # Make it look like a record from before the diagnosis existed.
    (run_dir / "units.csv").unlink()
    summary = json.loads((run_dir / "summary.json").read_text())
    del summary["diagnosis"]
    del summary["config"]["diagnose"]
    del summary["init_signal"]
    (run_dir / "summary.json").write_text(json.dumps(summary))

    result = initlab("report", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "born_dead" in result.stdout and "born dead" in result.stdout
    # activations.csv still says every unit of fc1..fc4 is zero on every example.
    assert "fc1, fc2, fc3, fc4" in result.stdout
    assert "born_dead" in (run_dir / "tables" / "diagnosis.txt").read_text()
    # The report derives the diagnosis in memory; it never rewrites the record.
    assert "diagnosis" not in json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_report_on_something_that_is_not_a_run_is_one_line(tmp_path):
    result = initlab("report", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr and "nowhere" in result.stderr


@pytest.mark.slow
def test_a_bad_threshold_is_one_line_before_anything_runs(tmp_path):
    result = initlab("run", "diagnose.layer_fraction=1.5", f"hydra.run.dir={tmp_path / 'r'}",
                     cwd=tmp_path)
    assert result.returncode != 0
    assert "diagnose.layer_fraction must be in [0, 1) (got 1.5)" in result.stderr
    assert "Traceback" not in result.stderr
