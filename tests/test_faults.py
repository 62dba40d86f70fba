"""Nothing lost: signals sent to a real `initlab run`, a kill -9, a full disk, a reused
folder. Each test asserts the exit code, the one line the user sees, the status in the
record and which files survive.
"""

import csv
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import initlab_cli, read_summary

LONG_RUN = ["trainer.epochs=1000000", "trainer.log_every=50", "trainer.flush_every_s=0.2",
            "trainer.progress=false"]


def _command() -> list[str]:
    script = Path(sys.executable).with_name("initlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "initlab.cli"]


def start(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.Popen([*_command(), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def metrics_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def wait_for_epochs(run_dir: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until metrics.csv (written as training goes) holds ``at_least`` epochs; between looks,
    a wait on the process itself, so one that ends first fails the test at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(metrics_rows(run_dir)) >= at_least:
            return
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the process ended (exit {proc.returncode}) before epoch {at_least}")
    raise AssertionError(f"{run_dir} never reached epoch {at_least}")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_and_keeps_everything_measured(tmp_path, signum, code):
    run_dir = tmp_path / "run"
    proc = start("run", *LONG_RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for_epochs(run_dir, 100, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert f"interrupted by {signal.Signals(signum).name}" in line and str(run_dir) in line
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted"
    assert summary["signal"] == signal.Signals(signum).name
    epochs = summary["epochs_run"]
    # Every epoch trained is in the record, each exactly once, and so is every step.
    assert [int(r["epoch"]) for r in metrics_rows(run_dir)] == list(range(1, epochs + 1))
    with (run_dir / "grad_norms.csv").open(newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["param"] == "fc1.weight"]
    assert steps == list(range(summary["steps_run"]))
    for name in ("init", "best", "last"):
        assert (run_dir / "checkpoints" / f"{name}.pt").exists()
    report = initlab_cli("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "interrupted" in report.stdout


@pytest.mark.slow
def test_kill_9_keeps_all_but_the_last_moments(tmp_path):
    run_dir = tmp_path / "run"
    proc = start("run", *LONG_RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for_epochs(run_dir, 300, proc)
    proc.kill()
    proc.communicate(timeout=60)
    rows = metrics_rows(run_dir)
    summary = read_summary(run_dir)
    assert summary["status"] == "running"  # nobody could say otherwise
    assert len(rows) >= 300
    # summary.json's heartbeat and metrics.csv agree up to the last flush.
    assert 0 < summary["epochs_run"] <= len(rows)
    assert summary["process"]["pid"] == proc.pid
    assert (run_dir / "data.pt").exists() and (run_dir / "checkpoints" / "init.pt").exists()


def test_a_second_signal_aborts_at_once():
    from initlab.interrupts import Interrupted, StopOnSignal

    stop = StopOnSignal()
    stop._handle(signal.SIGINT, None)  # the first: stop after this epoch
    assert stop.received == signal.SIGINT
    with pytest.raises(Interrupted) as raised:
        stop._handle(signal.SIGINT, None)
    assert raised.value.signum == signal.SIGINT


def test_the_handlers_are_restored_after_a_run(run_lab):
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    run_lab("trainer.epochs=2", config_name="smoke")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.slow
def test_an_interrupted_sweep_stops_and_still_compares_what_ran(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start("run", "-m", "seed=0,1,2", *LONG_RUN[1:], "trainer.epochs=1000000",
                 "report=minimal", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    # seed=0 is job 0, with a million epochs: interrupt it while it trains.
    wait_for_epochs(sweep_dir / "0", 100, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert read_summary(sweep_dir / "0")["status"] == "interrupted"
    assert not (sweep_dir / "1").exists()  # the sweep stopped: later jobs never started
    assert (sweep_dir / "comparison.csv").exists()
    with (sweep_dir / "comparison.csv").open(newline="") as f:
        rows = {r["job"]: r["status"] for r in csv.DictReader(f)}
    assert rows["0"] == "interrupted"


# ----------------------------------------------------------------------- reused folders
@pytest.mark.slow
def test_a_run_into_a_folder_holding_a_record_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = initlab_cli("run", "-cn", "smoke", "report=minimal", f"hydra.run.dir={run_dir}",
                        cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (run_dir / "summary.json").read_bytes()
    second = initlab_cli("run", "-cn", "smoke", "seed=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert second.returncode == 2
    (line,) = error_lines(second.stderr)
    assert "already holds a run record" in line and "overwrite=true" in line
    assert (run_dir / "summary.json").read_bytes() == before


@pytest.mark.slow
def test_overwrite_replaces_the_old_record_without_stale_files(tmp_path):
    run_dir = tmp_path / "run"
    assert initlab_cli("run", "-cn", "smoke", "report=minimal", f"hydra.run.dir={run_dir}",
                       cwd=tmp_path).returncode == 0
    (run_dir / "figures").mkdir(exist_ok=True)
    (run_dir / "figures" / "stale.png").write_bytes(b"old")
    (run_dir / "weights.csv").write_text("stale\n")
    result = initlab_cli("run", "-cn", "smoke", "seed=1", "overwrite=true", "report=minimal",
                         "trainer.recorders=[grad_norms]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_summary(run_dir)["seed"] == 1
    assert not (run_dir / "figures" / "stale.png").exists()
    assert not (run_dir / "weights.csv").exists()  # not recorded this time: none left over


@pytest.mark.slow
def test_a_sweep_into_an_old_sweep_folder_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["run", "-m", "-cn", "smoke", "seed=0,1", "report.quiet=true",
            f"hydra.sweep.dir={sweep_dir}"]
    assert initlab_cli(*args, cwd=tmp_path).returncode == 0
    again = initlab_cli(*args, cwd=tmp_path)
    assert again.returncode == 2
    (line,) = error_lines(again.stderr)
    assert "already holds a sweep" in line


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_folder_claimed_by_another_process_is_refused_before_it_writes(tmp_path, mode):
    # The first claimant (this test's process) has passed its checks but written nothing
    # yet: the window in which two runs both used to find the folder free.
    from initlab.preflight import claim, release

    folder = tmp_path / "same"
    made = claim(folder)
    try:
        args = (["-m", "seed=0,1", f"hydra.sweep.dir={folder}"] if mode == "sweep"
                else [f"hydra.run.dir={folder}"])
        second = initlab_cli("run", "-cn", "smoke", "report=minimal", *args, cwd=tmp_path)
    finally:
        release(made)
    assert second.returncode == 2
    (line,) = error_lines(second.stderr)
    assert f"being written by another initlab run or sweep (pid {os.getpid()})" in line
    assert not (folder / "summary.json").exists() and not (folder / "0").exists()


@pytest.mark.slow
def test_two_runs_and_two_sweeps_into_one_folder_the_second_refuses(tmp_path):
    for args, watched in ((["hydra.run.dir=same"], "same"),
                          (["-m", "seed=0,1", "hydra/launcher=batched", "hydra.sweep.dir=sweep"],
                           "sweep/0")):
        first = start("run", "-cn", "smoke", *LONG_RUN, "report=minimal", *args, cwd=tmp_path)
        wait_for_epochs(tmp_path / watched, 1, first)
        # overwrite=true too: a folder in use is never replaced under its writer.
        second = initlab_cli("run", "-cn", "smoke", "report=minimal", "overwrite=true",
                             "seed=7", *args, cwd=tmp_path)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
        assert second.returncode == 2, second.stderr
        (line,) = error_lines(second.stderr)
        assert "is being written by another initlab run or sweep" in line
        assert read_summary(tmp_path / watched)["seed"] == 0
        epochs = [int(r["epoch"]) for r in metrics_rows(tmp_path / watched)]
        assert epochs == list(range(1, len(epochs) + 1))  # one run's rows, none mixed in


@pytest.mark.slow
def test_overwrite_removes_only_the_sweeps_own_record(tmp_path):
    outputs, sweep = tmp_path / "outputs", tmp_path / "sweep"
    quiet = ["-cn", "smoke", "report.quiet=true", "trainer.epochs=2"]
    assert initlab_cli("run", *quiet, f"hydra.run.dir={outputs}/runs/a", cwd=tmp_path).returncode == 0
    # A folder of other records is no sweep's, and taking it would hide them from a listing.
    for args in ([f"hydra.run.dir={outputs}"], ["-m", f"hydra.sweep.dir={outputs}", "overwrite=true"]):
        refused = initlab_cli("run", *quiet, *args, cwd=tmp_path)
        (line,) = error_lines(refused.stderr)
        assert refused.returncode == 2 and f"holds 1 other record below it ({outputs}/runs/a)" in line
    assert initlab_cli("run", "-m", *quiet, "seed=0,1", f"hydra.sweep.dir={sweep}",
                       cwd=tmp_path).returncode == 0
    assert initlab_cli("run", *quiet, f"hydra.run.dir={sweep}/runs/b", cwd=tmp_path).returncode == 0
    again = initlab_cli("run", "-m", *quiet, "seed=3", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    (line,) = error_lines(again.stderr)
    assert again.returncode == 2 and "already holds a sweep (multirun.yaml and 2 job folders)" in line
    result = initlab_cli("run", "-m", *quiet, "seed=2", f"hydra.sweep.dir={sweep}", "overwrite=true",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_summary(sweep / "runs" / "b")["status"] == "completed"  # not the sweep's own
    assert read_summary(outputs / "runs" / "a")["status"] == "completed"
    assert read_summary(sweep / "0")["seed"] == 2
    assert not (sweep / "1").exists()  # the old sweep's job, replaced with it


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "under_a_file"])
def test_an_output_folder_that_cannot_be_made_fails_in_one_line(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    run_dir = blocker if where == "file" else blocker / "run"
    result = initlab_cli("run", "-cn", "smoke", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert str(run_dir) in line
    assert blocker.read_text() == "a file"


# ---------------------------------------------------------------------------- full disk
def _file_size_limit(limit: int):
    def apply() -> None:
        # Past the limit a write fails with EFBIG ("File too large"), as a full disk fails
        # with ENOSPC, instead of the process being killed by SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_full_disk_while_writing_the_record_fails_in_one_line_and_truncates_nothing(tmp_path):
    run_dir = tmp_path / "run"
    # The default run's grad_norms.csv (~38 kB) outgrows the limit; summary.json and data.pt do not.
    proc = start("run", "report=minimal", "trainer.progress=false", f"hydra.run.dir={run_dir}",
                 cwd=tmp_path, preexec_fn=_file_size_limit(25_000))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "File too large" in line
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and "File too large" in summary["error"]
    assert not list(run_dir.rglob("*.tmp"))  # no half-written file left behind
    import torch

    data = torch.load(run_dir / "data.pt", weights_only=True)  # whole, not truncated
    assert data["X_train"].shape == (640, 2)


@pytest.mark.slow
def test_a_disk_too_full_for_even_hydras_files_says_so_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = start("run", "-cn", "smoke", "trainer.progress=false", f"hydra.run.dir={run_dir}",
                 cwd=tmp_path, preexec_fn=_file_size_limit(600))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    assert "File too large" in line and str(run_dir) in line


def test_mark_record_never_raises_when_nothing_can_be_written(tmp_path, monkeypatch):
    from initlab import record
    from initlab.job import mark_record

    (tmp_path / "summary.json").write_text(json.dumps({"status": "running", "seed": 3}))

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record.RecordWriter, "write_text", full_disk)
    # No room for a new file: the old summary is overwritten in place, so it still tells.
    assert mark_record(tmp_path, "failed", "boom") is None
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["status"] == "failed" and written["error"] == "boom" and written["seed"] == 3
    # Not even that: one line says so, and nothing raises.
    monkeypatch.setattr("initlab.job._overwrite_in_place", lambda path, text: full_disk(path, text))
    why = mark_record(tmp_path, "interrupted", "again")
    assert "No space left on device" in why
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_a_running_record_whose_pid_was_reused_is_shown_stopped():
    from initlab.record import effective_status, process_identity

    me = process_identity()
    assert me["started"] is not None
    running = {"status": "running", "process": me}
    assert effective_status(running) == "running"
    # The same pid, started at another time: another process now, the writer is gone.
    reused = {"status": "running", "process": {**me, "started": me["started"] - 1}}
    assert effective_status(reused) == "stopped"


@pytest.mark.slow
def test_a_batched_sweep_into_a_full_disk_says_so_on_stderr(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = start("run", "-m", "seed=0,1,2", "hydra/launcher=batched", "report=minimal",
                 f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, preexec_fn=_file_size_limit(25_000))
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert lines and all(line.startswith("initlab") and "File too large" in line
                         for line in lines), stderr
    for i in range(3):
        assert read_summary(sweep_dir / str(i))["status"] == "failed"


@pytest.mark.parametrize("key, marker, holds", [
    ("hydra.sweep.dir", "summary.json", "a run record"),
    ("hydra.run.dir", "multirun.yaml", "a sweep"),
    ("hydra.run.dir", "compared.txt", "a comparison"),
])
def test_a_folder_of_another_kind_of_record_is_refused_even_with_overwrite(tmp_path, key, marker, holds):
    from omegaconf import OmegaConf

    from initlab import preflight

    folder = tmp_path / "record"
    folder.mkdir()
    (folder / marker).write_text("{}\n")
    section = key.split(".")[1]
    cfg = OmegaConf.create({"hydra": {section: {"dir": str(folder)}}, "overwrite": True})
    try:
        with pytest.raises(preflight.PreflightError, match=f"holds {holds}"):
            preflight.prepare_output_dir(cfg, key)
        (folder / "summary.json").write_text("{}\n")  # a run record: nothing goes inside it
        cfg = OmegaConf.create({"hydra": {"run": {"dir": str(folder / "sub")}}})
        with pytest.raises(preflight.PreflightError, match="is inside the run record"):
            preflight.prepare_output_dir(cfg, "hydra.run.dir")
    finally:
        preflight.release(None, str(folder))
    assert (folder / marker).read_text() == "{}\n"
