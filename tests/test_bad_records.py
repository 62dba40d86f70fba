"""Fault injection on the reading side: corrupted records, stale sweep folders, jobs never
started, runs that stopped without a word.

One real smoke record and one real two-job sweep are made once per module; every case
copies one and breaks a single file, then asks `initlab report` / `initlab list` (the real
command, in a subprocess) and checks the exit code, the one line the user sees and which
file it names.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from initlab.record import (
    RecordError,
    describe_status,
    effective_status,
    read_checkpoint,
    read_data,
    read_record,
)
from initlab.report.compare import read_sweep, render_sweep, sweep_jobs
from initlab.report.overview import find_entries, sweep_entry
from tests.conftest import compose_config, initlab_cli, read_summary


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """One complete smoke record (no .hydra/: run() is called directly)."""
    from initlab.run import run

    out = tmp_path_factory.mktemp("record") / "run"
    run(compose_config("trainer.progress=false", config_name="smoke"), out, quiet=True)
    return out


@pytest.fixture
def copy(record, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(record, run_dir)
    return run_dir


def edit_summary(run_dir: Path, **changes) -> None:
    summary = read_summary(run_dir)
    for key, value in changes.items():
        if value is ...:
            summary.pop(key, None)
        else:
            summary[key] = value
    (run_dir / "summary.json").write_text(json.dumps(summary))


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines))


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): nobody answers to it."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def evil_pickle(path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    torch.save({"fc1.weight": Evil()}, path)


def checkpoint_list(run_dir: Path) -> None:
    torch.save([1, 2], run_dir / "checkpoints" / "last.pt")


def checkpoint_wrong_shape(run_dir: Path) -> None:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["fc2.weight"] = torch.zeros(3, 3)
    torch.save(state, run_dir / "checkpoints" / "last.pt")


def checkpoint_missing_param(run_dir: Path) -> None:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    del state["fc3.bias"]
    torch.save(state, run_dir / "checkpoints" / "last.pt")


def rederive_diagnosis(run_dir: Path) -> None:
    # Without a stored diagnosis the report derives it, reading init.pt and last.pt.
    edit_summary(run_dir, diagnosis=...)


# ------------------------------------------------------------------- corrupted records
# (case, the file it breaks, how, a phrase of the one line). Each leaves the rest whole.
CORRUPT = [
    ("summary_is_a_list", "summary.json",
     lambda d: (d / "summary.json").write_text("[1, 2]"), "not a JSON object"),
    ("summary_is_empty_object", "summary.json",
     lambda d: (d / "summary.json").write_text("{}"), "no status"),
    ("summary_zero_bytes", "summary.json",
     lambda d: (d / "summary.json").write_text(""), "is empty"),
    ("summary_cut_short", "summary.json",
     lambda d: (d / "summary.json").write_text((d / "summary.json").read_text()[:200]),
     "not valid JSON"),
    ("status_not_text", "summary.json", lambda d: edit_summary(d, status=3), "status"),
    ("status_unknown", "summary.json", lambda d: edit_summary(d, status="done"), "not one of"),
    ("epochs_run_text", "summary.json", lambda d: edit_summary(d, epochs_run="twenty"),
     "epochs_run"),
    ("metrics_not_numbers", "summary.json",
     lambda d: edit_summary(d, metrics={"test": {"loss": 0.5, "acc": "high"}}), "metrics.test.acc"),
    ("metrics_a_list", "summary.json", lambda d: edit_summary(d, metrics=[0.5]), "metrics"),
    ("param_shapes_not_sizes", "summary.json",
     lambda d: edit_summary(d, param_shapes={"fc1.weight": "4x2"}), "param_shapes"),
    ("config_a_list", "summary.json", lambda d: edit_summary(d, config=[1]), "config"),
    ("metrics_csv_zero_bytes", "metrics.csv",
     lambda d: (d / "metrics.csv").write_text(""), "says 20 epochs ran"),
    ("metrics_csv_missing", "metrics.csv",
     lambda d: (d / "metrics.csv").unlink(), "is missing"),
    ("metrics_csv_other_header", "metrics.csv",
     lambda d: replace_line(d / "metrics.csv", 1, "epoch,loss,acc"), "has columns"),
    ("metrics_csv_epoch_text", "metrics.csv",
     lambda d: replace_line(d / "metrics.csv", 3, "two,0.5,0.5,0.5,0.5"), "'epoch'"),
    ("grad_norms_cell_text", "grad_norms.csv",
     lambda d: replace_line(d / "grad_norms.csv", 2, "0,1,fc1.weight,abc"), "'norm'"),
    ("activations_short_row", "activations.csv",
     lambda d: replace_line(d / "activations.csv", 2, "0,fc1,0.1"), "cells"),
    ("weights_header_only_two", "weights.csv",
     lambda d: replace_line(d / "weights.csv", 1, "epoch,param"), "has columns"),
    ("checkpoint_a_list", "checkpoints/last.pt",
     lambda d: (checkpoint_list(d), rederive_diagnosis(d)), "not a state dict"),
    ("checkpoint_malicious_pickle", "checkpoints/last.pt",
     lambda d: (evil_pickle(d / "checkpoints" / "last.pt"), rederive_diagnosis(d)), "refused"),
    ("checkpoint_wrong_shape", "checkpoints/last.pt",
     lambda d: (checkpoint_wrong_shape(d), rederive_diagnosis(d)), "param_shapes"),
    ("checkpoint_missing_param", "checkpoints/last.pt",
     lambda d: (checkpoint_missing_param(d), rederive_diagnosis(d)), "missing fc3.bias"),
    ("figures_is_a_file", "figures",
     lambda d: (shutil.rmtree(d / "figures", ignore_errors=True),
                (d / "figures").write_text("")), "is a file"),
    ("tables_is_a_file", "tables",
     lambda d: (shutil.rmtree(d / "tables", ignore_errors=True),
                (d / "tables").write_text("")), "is a file"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, bad_file, corrupt, phrase", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupted_record_gets_one_line_naming_the_file(copy, tmp_path, name, bad_file,
                                                          corrupt, phrase):
    corrupt(copy)
    before = (copy / "summary.json").read_bytes()
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(copy / bad_file) in lines[0] and phrase in lines[0], lines[0]
    assert "internal error" not in lines[0]  # a bad record is bad input, not a bug
    assert (copy / "summary.json").read_bytes() == before  # the report never writes it
    assert not (copy / "PWNED").exists()  # a pickle that runs code is never run


@pytest.mark.parametrize("junk", [b"junk\n", b"garbage\n", b"\x80\x02}q\x00."[:3]])
def test_a_tensor_file_of_junk_bytes_is_named_whatever_torch_trips_on(copy, junk):
    (copy / "checkpoints" / "init.pt").write_bytes(junk)
    (copy / "data.pt").write_bytes(junk)
    named = r"\.pt (cannot be loaded \(truncated|is not a plain tensor file)"
    with pytest.raises(RecordError, match=r"checkpoints/init" + named):
        read_checkpoint(copy, "init")
    with pytest.raises(RecordError, match=r"data" + named):
        read_data(copy)


def test_checkpoints_and_data_are_checked_as_they_are_read(copy):
    assert set(read_checkpoint(copy, "best")) == set(read_summary(copy)["param_shapes"])
    assert set(read_data(copy)) >= {"X_train", "y_train", "X_dev", "y_dev", "X_test", "y_test"}
    checkpoint_list(copy)
    with pytest.raises(RecordError, match=r"last\.pt holds a list, not a state dict"):
        read_checkpoint(copy, "last")
    evil_pickle(copy / "checkpoints" / "best.pt")
    with pytest.raises(RecordError, match="refused to unpickle") as refused:
        read_checkpoint(copy, "best")
    assert "\n" not in str(refused.value) and not (copy / "checkpoints" / "PWNED").exists()
    (copy / "data.pt").write_bytes((copy / "data.pt").read_bytes()[:100])
    with pytest.raises(RecordError, match=r"data\.pt cannot be loaded \(truncated"):
        read_data(copy)
    record = read_record(copy)  # the CSVs and summary are fine: reading them still works
    with pytest.raises(RecordError, match=r"checkpoints/missing\.pt is missing"):
        record.checkpoint("missing")


# ------------------------------------------------------------- what must not break reading
def write_hydra(run_dir: Path, config: str, overrides: str = "- seed=0\n") -> None:
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(config)
    (run_dir / ".hydra" / "overrides.yaml").write_text(overrides)


@pytest.mark.parametrize("config, overrides", [
    ("seed: ${now:%s}\ntrainer:\n  epochs: 20\n", "- seed=${now:%s}\n"),  # resolver of the run
    ("model:\n  width: 4\ntrainer:\n  epochs: ${model.width}\n", "- trainer.epochs=${model.width}\n"),
    ("seed: [1, 2\n", "- [unclosed\n"),  # not YAML at all
    ("- a list\n", "{a: 1}\n"),  # YAML, but not what Hydra writes
], ids=["unsupported_resolver", "interpolated_epochs", "broken_yaml", "wrong_shapes"])
@pytest.mark.slow
def test_hydra_files_only_label_a_run_the_summary_holds_its_config(copy, tmp_path, config,
                                                                   overrides):
    write_hydra(copy, config, overrides)
    record = read_record(copy)
    assert record.config == read_summary(copy)["config"]  # resolved when the run ran
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Run configuration" in result.stdout


def test_a_row_cut_by_a_kill_is_dropped_and_every_whole_row_kept(copy):
    whole = read_record(copy).metrics
    with (copy / "metrics.csv").open("a") as f:
        f.write("21,0.6")  # no newline: the last write of a run killed in mid-write
    assert read_record(copy).metrics == whole
    # Only a streamed file is written as the run goes; a cut row elsewhere is damage.
    path = copy / "activations.csv"
    path.write_text(path.read_text() + "99,fc1")
    with pytest.raises(RecordError, match=r"activations\.csv: line \d+ has 2 cells, not 6"):
        read_record(copy)


@pytest.mark.parametrize("name, cut, message", [
    ("metrics.csv", 3, r"metrics\.csv has 17 rows where summary\.json says 20 \(epochs\): cut short"),
    ("grad_norms.csv", 6, r"grad_norms\.csv has \d+ rows where summary\.json says \d+ .*cut short"),
])
def test_a_table_cut_to_whole_rows_is_named_not_read_as_complete(copy, name, cut, message):
    lines = (copy / name).read_text().splitlines(keepends=True)
    (copy / name).write_text("".join(lines[:-cut]))  # whole rows only: no partial line
    with pytest.raises(RecordError, match=message):
        read_record(copy)
    result = initlab_cli("list", str(copy.parent), cwd=copy.parent)
    assert result.returncode == 0  # a listing reads the summary only


def test_a_record_marked_after_a_crash_counts_the_epochs_its_metrics_hold(copy):
    from initlab.job import mark_record

    lines = (copy / "metrics.csv").read_text().splitlines(keepends=True)
    (copy / "metrics.csv").write_text("".join(lines[:8]))  # 7 epochs reached the disk
    assert mark_record(copy, "interrupted", "aborted") is None
    assert read_summary(copy)["epochs_run"] == 7
    assert len(read_record(copy).metrics) == 7


@pytest.mark.slow
@pytest.mark.parametrize("dpi", ["100000", "0", "-5", "many"])
def test_dpi_out_of_range_is_one_argparse_error(copy, tmp_path, dpi):
    result = initlab_cli("report", str(copy), "--dpi", dpi, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "--dpi" in error and (dpi in error)


@pytest.mark.slow
def test_a_bug_in_the_report_is_one_line_and_a_saved_traceback(copy, tmp_path):
    # A bug (here a figure function that raises) must still be reportable: one line that
    # says where its traceback was saved, exit 1.
    code = ("import sys\n"
            "import initlab.report.figures as figures\n"
            "def boom(*args, **kwargs):\n"
            "    raise ZeroDivisionError('simulated bug')\n"
            "figures.render_figures = boom\n"
            "from initlab.cli import main\n"
            f"sys.exit(main(['report', {str(copy)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "internal error: ZeroDivisionError: simulated bug" in line
    assert str(copy / "report_error.txt") in line
    assert "ZeroDivisionError" in (copy / "report_error.txt").read_text()


# --------------------------------------------------------------------- initlab list
@pytest.mark.slow
def test_one_bad_run_does_not_hide_the_others(record, tmp_path):
    outputs = tmp_path / "outputs"
    shutil.copytree(record, outputs / "good")
    shutil.copytree(record, outputs / "bad")
    (outputs / "bad" / "summary.json").write_text("[1, 2]")
    for command in ("list", "report"):
        result = initlab_cli(command, str(outputs), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert "outputs/good" in result.stdout and "outputs/bad" in result.stdout
        assert "unreadable" in result.stdout and "completed" in result.stdout
    statuses = {e.path.name: e.status for e in find_entries(outputs)}
    assert statuses == {"good": "completed",
                        "bad": "unreadable: summary.json: not a JSON object (it holds a list)"}


# ------------------------------------------------------------ stopped without a word
@pytest.mark.slow
def test_a_running_record_whose_process_is_gone_is_reported_stopped(copy, tmp_path):
    edit_summary(copy, status="running", epochs_run=7,
                 process={"pid": dead_pid(), "host": socket.gethostname()})
    summary = read_summary(copy)
    assert effective_status(summary) == "stopped"
    assert describe_status(summary).startswith("stopped without a word at epoch 7")
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stopped without a word at epoch 7" in result.stdout
    listing = initlab_cli("list", str(tmp_path), cwd=tmp_path)
    (row,) = [line for line in listing.stdout.splitlines() if "stopped" in line]
    assert "running" not in row
    assert read_summary(copy)["status"] == "running"  # shown as stopped, never rewritten


def test_a_live_or_unverifiable_process_stays_running():
    alive = {"status": "running", "epochs_run": 3,
             "process": {"pid": os.getpid(), "host": socket.gethostname()}}
    assert effective_status(alive) == "running"
    assert describe_status(alive).startswith("running (epoch 3 so far")
    elsewhere = {**alive, "process": {"pid": dead_pid(), "host": "another-host.example"}}
    assert effective_status(elsewhere) == "running"
    assert "another-host.example" in describe_status(elsewhere)
    assert effective_status({"status": "running"}) == "running"  # an old record: no process
    assert effective_status({**alive, "status": "completed",
                             "process": {"pid": dead_pid(), "host": socket.gethostname()}}
                            ) == "completed"


@pytest.mark.slow
def test_a_record_that_stopped_before_its_first_epoch_holds_no_results(copy, tmp_path):
    for name in ("metrics.csv", "grad_norms.csv"):
        (copy / name).write_text((copy / name).read_text().splitlines()[0] + "\n")
    edit_summary(copy, status="running", epochs_run=0, metrics=...,
                 process={"pid": dead_pid(), "host": socket.gethostname()})
    result = initlab_cli("report", str(copy), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "holds no results" in line and "stopped without a word at epoch 0" in line


# ------------------------------------------------------------------------- sweeps
@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real two-job sweep (seed=0,1), Hydra's basic launcher, no figures drawn per job."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep_dir = tmp / "sweep"
    result = initlab_cli("run", "-m", "-cn", "smoke", "seed=0,1", "trainer.epochs=3",
                         f"hydra.sweep.dir={sweep_dir}", "report.quiet=true", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return sweep_dir


@pytest.fixture
def sweep_copy(sweep, tmp_path) -> Path:
    target = tmp_path / "sweep"
    shutil.copytree(sweep, target)
    return target


def edit_multirun(sweep_dir: Path, task: list[str] | None = None, subdir: str | None = None):
    path = sweep_dir / "multirun.yaml"
    cfg = OmegaConf.load(path)
    if task is not None:
        cfg.hydra.overrides.task = task
    if subdir is not None:
        cfg.hydra.sweep.subdir = subdir
    OmegaConf.save(cfg, path)


def comparison(sweep_dir: Path) -> list[tuple[str, str, str]]:
    import csv

    render_sweep(sweep_dir)
    with (sweep_dir / "comparison.csv").open(newline="") as f:
        return [(r["job"], r["label"], r["status"]) for r in csv.DictReader(f)]


TASK = ["trainer.epochs=3", "report.quiet=true"]


@pytest.mark.slow
def test_stale_folders_are_ignored_and_jobs_never_started_listed(sweep_copy, tmp_path):
    # A folder left by an older, bigger sweep, and a third job the sweep never reached.
    shutil.copytree(sweep_copy / "0", sweep_copy / "5")
    edit_multirun(sweep_copy, task=["seed=0,1,2", *TASK])
    assert comparison(sweep_copy) == [
        ("0", "seed=0", "completed"), ("1", "seed=1", "completed"), ("2", "seed=2", "not started")]
    assert sweep_entry(sweep_copy).status == "3 jobs: 2 completed, 1 not started"
    listing = initlab_cli("list", ".", cwd=tmp_path)
    assert listing.returncode == 0 and "not started" in listing.stdout, listing.stderr


@pytest.mark.slow  # ~3 s: the README's test command stays under its budget
def test_a_smaller_sweep_rerun_into_an_old_folder_reports_its_own_jobs(sweep_copy):
    # A one-job sweep (seed=0) run where a two-job sweep had been: job 1 is not its own.
    edit_multirun(sweep_copy, task=["seed=0", *TASK])
    jobs, _ = read_sweep(sweep_copy)
    assert [(j.name, j.status) for j in jobs] == [("0", "completed")]


def test_a_job_folder_of_another_sweep_in_a_jobs_place_is_not_that_job(sweep_copy):
    edit_multirun(sweep_copy, task=["seed=1,7", *TASK])  # job 0 is now seed=1, job 1 seed=7
    jobs, _ = read_sweep(sweep_copy)
    assert [(j.name, j.overrides[0], j.status) for j in jobs] == [
        ("0", "seed=1", "not started"), ("1", "seed=7", "not started")]
    assert "holds a job of another sweep (seed=0" in jobs[0].error


def test_an_interrupted_job_is_marked_and_still_compared(sweep_copy):
    edit_summary(sweep_copy / "1", status="interrupted", signal="SIGTERM")
    assert comparison(sweep_copy) == [
        ("0", "seed=0", "completed"), ("1", "seed=1", "interrupted")]
    jobs, _ = read_sweep(sweep_copy)
    assert jobs[1].finished and jobs[1].final("test", "acc") >= 0 and jobs[1].metrics
    assert "interrupted by SIGTERM" in jobs[1].error


def test_a_sweep_job_that_stopped_without_a_word_is_stopped(sweep_copy):
    edit_summary(sweep_copy / "1", status="running", metrics=...,
                 process={"pid": dead_pid(), "host": socket.gethostname()})
    assert comparison(sweep_copy)[1] == ("1", "seed=1", "stopped")


def test_an_unreadable_job_is_a_row_not_a_crash(sweep_copy):
    (sweep_copy / "1" / "summary.json").write_text("{}")
    jobs, _ = read_sweep(sweep_copy)
    assert [j.status for j in jobs] == ["completed", "unreadable"]
    assert "no status" in jobs[1].error


def test_a_custom_subdir_matches_folders_to_jobs_by_their_overrides(sweep_copy):
    (sweep_copy / "0").rename(sweep_copy / "first")
    (sweep_copy / "1").rename(sweep_copy / "second")
    shutil.copytree(sweep_copy / "first", sweep_copy / "stale")
    (sweep_copy / "stale" / ".hydra" / "overrides.yaml").write_text(
        "- seed=9\n- trainer.epochs=3\n- report.quiet=True\n")
    edit_multirun(sweep_copy, task=["seed=1,0,2", *TASK], subdir="${hydra.job.override_dirname}")
    slots = sweep_jobs(sweep_copy)
    assert [(s.name, s.job_dir and s.job_dir.name) for s in slots] == [
        ("second", "second"), ("first", "first"), ("2", None)]
    assert [j.status for j in read_sweep(sweep_copy)[0]] == ["completed", "completed",
                                                             "not started"]


def test_a_sweep_file_of_an_unknown_shape_falls_back_to_its_folders(sweep_copy):
    (sweep_copy / "multirun.yaml").write_text("hydra: {}\n")
    assert [j.name for j in read_sweep(sweep_copy)[0]] == ["0", "1"]
