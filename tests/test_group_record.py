"""Group records (initlab/group_record.py): a big batched sweep's jobs keep no folders; each
group writes one Parquet record, streamed, validated on read, compared like folders, and a
job's folder is made on demand (initlab/materialize.py) as the sweep would have written it.

The reference is always the job trained alone into a folder of its own, through the
ordinary record (summary.json, metrics.csv, grad_norms.csv), not the group record itself.
"""

import csv
import json
import math
import os
from pathlib import Path

import pytest

from initlab.group_record import (
    GroupRecordWriter,
    GroupSlot,
    grad_norm_rows,
    group_dir,
    read_groups,
    read_job_summary,
    write_group_file,
)
from initlab.model import parameter_shapes
from initlab.record import RecordError, effective_status
from tests.conftest import compose_config, initlab_cli
from tests.test_sweeps import read_comparison

# What differs between two trainings of one job: who wrote it, when, how long it took.
VOLATILE = ("process", "updated", "timing", "launcher")
# Split sizes a member of a stack computes bit for bit as alone (tests/test_engine.py's).
SIZES = ("data.n_samples=400", "data.n_train=256", "data.n_dev=72", "data.n_test=72")


def _params(cfg) -> list[str]:
    return list(parameter_shapes(cfg.model, cfg.data.dim))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _same_summary(a: dict, b: dict) -> None:
    strip = lambda s: {k: v for k, v in s.items() if k not in VOLATILE}  # noqa: E731
    assert strip(a) == strip(b)


def test_a_group_record_holds_what_each_jobs_folder_would(tmp_path):
    """Three members written to a group record against each job trained alone into a
    folder: the same summary (diagnosis included), metrics per epoch and gradient norms at
    the log steps (step 0, the last step of each log epoch)."""
    from initlab.engine import train_group

    cfgs = [compose_config(*SIZES, f"seed={s}", "trainer.epochs=6", "trainer.log_every=3",
                           "trainer.batch_size=32", config_name="smoke") for s in (0, 1, 2)]
    where = group_dir(tmp_path / "sweep", 1)
    write_group_file(where, 1, _params(cfgs[0]), 3)
    overrides = [[f"seed={s}"] for s in (0, 1, 2)]
    train_group(cfgs, [GroupSlot(where, k) for k in range(3)], overrides=overrides)
    jobs = read_groups(tmp_path / "sweep")
    assert sorted(jobs) == [0, 1, 2]
    for k, cfg in enumerate(cfgs):
        alone = tmp_path / f"alone{k}"
        train_group([cfg], [alone], overrides=[overrides[k]])
        summary = json.loads((alone / "summary.json").read_text())
        group, job_overrides, whole = read_job_summary(tmp_path / "sweep", k)
        assert group == where and job_overrides == overrides[k]
        assert whole.pop("hydra_files") == {}
        _same_summary(whole, summary)
        order = lambda d: [key for key in d if key not in VOLATILE]  # noqa: E731
        assert order(whole) == order(summary)
        # What a comparison reads: columns, not the whole summary.
        lean = jobs[k].summary
        for key in ("status", "epochs_run", "best_epoch", "metrics", "grad_norms", "init_signal"):
            assert lean[key] == summary[key], key
        assert lean["config"] == {**summary["config"], "seed": None}
        assert lean["diagnosis"] == [{"code": d["code"], "severity": d["severity"]}
                                     for d in summary["diagnosis"]]
        assert jobs[k].overrides == overrides[k]
        rows = _csv(alone / "metrics.csv")
        assert jobs[k].metrics["epoch"] == [int(r["epoch"]) for r in rows]
        for column in ("train_loss", "train_acc", "dev_loss", "dev_acc"):
            # The CSV holds 9 significant digits of each float32; the record all of them.
            assert jobs[k].metrics[column] == pytest.approx([float(r[column]) for r in rows],
                                                            rel=1e-8)
        grads = _csv(alone / "grad_norms.csv")
        steps_per_epoch = len(grads) // 6 // len(_params(cfg))
        log_steps = {0} | {e * steps_per_epoch - 1 for e in (3, 6)}
        expected = [(int(r["step"]), int(r["epoch"]), r["param"], float(r["norm"]))
                    for r in grads if int(r["step"]) in log_steps]
        got = grad_norm_rows(where, k)
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], rel=1e-8)


def test_a_killed_group_keeps_its_parts_and_shows_its_jobs_stopped(tmp_path):
    """A writer killed after its first flush: its parts are read, a half-written part (the
    temporary name) is not, and a `running` job whose process is gone shows as stopped."""
    cfg = compose_config(config_name="smoke")
    where = group_dir(tmp_path, 1)
    write_group_file(where, 1, _params(cfg), 2)
    writer = GroupRecordWriter(where, 0, _params(cfg))
    gone = {"pid": 2**22 + 12345, "host": os.uname().nodename, "started": 1.0}
    for job in (0, 1):
        writer.job_row(job, {"status": "running", "seed": job, "config": {"seed": job},
                             "process": gone, "epochs_run": 0}, [f"seed={job}"])
    writer.metric_rows(0, [(1, 0.7, 0.5, 0.69, 0.5), (2, 0.6, 0.6, 0.65, 0.55)])
    writer.flush()
    (where / "jobs" / "part-000000000-00009.parquet.tmp").write_bytes(b"PAR1 cut short")
    jobs = read_groups(tmp_path)
    assert jobs[0].summary["epochs_run"] == 2 and jobs[1].summary["epochs_run"] == 0
    assert [effective_status(j.summary) for j in jobs.values()] == ["stopped", "stopped"]


def test_a_bad_group_record_is_refused_in_one_line(tmp_path):
    cfg = compose_config(config_name="smoke")
    where = group_dir(tmp_path, 1)
    write_group_file(where, 1, _params(cfg), 1)
    writer = GroupRecordWriter(where, 0, _params(cfg))
    writer.job_row(0, {"status": "completed", "seed": 0, "config": {}, "epochs_run": 3}, [])
    writer.metric_rows(0, [(1, 0.7, 0.5, 0.69, 0.5), (2, 0.6, 0.6, 0.65, 0.55)])
    writer.flush()
    with pytest.raises(RecordError, match="has 2 metrics rows where its summary says 3 epochs: cut short"):
        read_groups(tmp_path)
    bad = where / "metrics" / "part-000000001-00000.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(RecordError) as e:
        read_groups(tmp_path)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


# `key=<int>` lines are read without Hydra's parser (a 100,000-seed sweep has 100,000 of them).
INT_LINES = ["seed=5", "seed=0", "seed=-3", "seed=-0", "model.depth=10", "a.b_c=12", "_x=1",
             "x=99999999999999999999", "seed=007", "seed=1_000", "seed=+3", "hydra.x=1",
             "hydra=1", "+seed=1", "~seed", "seed=5 ", "a..b=1", "a.1=2", "seed=1e3",
             "seed=0x10", "act=relu", "seed=", "model/depth=1"]


@pytest.mark.parametrize("line", INT_LINES)
def test_int_assignments_are_read_as_hydras_parser_reads_them(line):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.initlab_batched_launcher._compose import parse_int_assignment

    fast = parse_int_assignment(line)
    try:
        [expected] = OverridesParser.create().parse_overrides([line])
    except Exception:  # noqa: BLE001 - Hydra refuses it: so must the fast path (by not reading it)
        assert fast is None
        return
    assert fast is None or fast == expected


def test_the_job_folder_settings_are_checked():
    from hydra_plugins.initlab_batched_launcher._core import LauncherError, check_settings

    with pytest.raises(LauncherError, match="job_folders=sometimes is not one of: auto, always, never"):
        check_settings(8, None, 1, "sometimes", 10)
    with pytest.raises(LauncherError, match="max_job_folders must be a whole number >= 0"):
        check_settings(8, None, 1, "auto", -1)


def _sweep(sweep_dir: Path, *launcher: str) -> None:
    from initlab.run import run_from_hydra
    from tests.test_batched_launcher import _multirun

    _multirun(sweep_dir, "batched", run_from_hydra, list(launcher),
              overrides=["seed=range(0,4)", "trainer.epochs=3", "act=relu,tanh", *SIZES])


def test_a_sweep_without_job_folders_compares_as_one_with_them(tmp_path):
    """The same 8-job sweep twice, every job in a folder, then past max_job_folders: no job
    folder, two groups, and the comparison reads the same jobs."""
    from initlab.report.compare import read_sweep

    _sweep(tmp_path / "folders", "hydra.launcher.job_folders=always")
    _sweep(tmp_path / "grouped", "hydra.launcher.max_job_folders=7")
    grouped = tmp_path / "grouped"
    assert not [p for p in grouped.iterdir() if p.name.isdigit()]
    assert sorted(p.name for p in (grouped / "groups").iterdir()) == ["0", "1"]
    a, _ = read_sweep(tmp_path / "folders")
    b, _ = read_sweep(grouped)
    assert [j.name for j in a] == [j.name for j in b] == [str(k) for k in range(8)]
    for x, y in zip(a, b):
        assert (x.label, x.status, x.findings, x.grad_first, x.grad_last, x.last_step) == \
               (y.label, y.status, y.findings, y.grad_first, y.grad_last, y.last_step)
        assert x.severities == y.severities
        for key in ("metrics", "epochs_run", "best_epoch"):
            assert x.summary[key] == y.summary[key]
        # No paper, no init swept: a comparison of a group record leaves the init_signal unread.
        assert "init_signal" not in y.summary
        assert y.metrics["train_loss"] == pytest.approx(x.metrics["train_loss"], rel=1e-8)


@pytest.mark.slow
def test_a_jobs_folder_made_on_demand_equals_the_one_the_sweep_would_have_written(tmp_path):
    """`initlab report SWEEP --job N` (and SWEEP/N) against the folder the same sweep wrote
    with job_folders=always: every file the same but who wrote it, when, and the launcher
    setting itself in hydra.yaml."""
    _sweep(tmp_path / "folders", "hydra.launcher.job_folders=always")
    _sweep(tmp_path / "grouped", "hydra.launcher.job_folders=never")
    result = initlab_cli("report", str(tmp_path / "grouped"), "--job", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trained again" in result.stdout and "differs" not in result.stdout
    made, written = tmp_path / "grouped" / "5", tmp_path / "folders" / "5"
    for path in sorted(written.rglob("*")):
        rel = path.relative_to(written)
        if path.is_dir() or rel.parts[0] in ("figures", "tables") or \
                rel.name in ("index.html", "initlab.log"):
            continue
        if rel.name == "summary.json":
            _same_summary(json.loads((made / rel).read_text()), json.loads(path.read_text()))
        elif rel.name == "hydra.yaml":
            keep = lambda t, d: [line.replace(str(d), "SWEEP") for line in t.splitlines()  # noqa: E731
                                 if "job_folders" not in line]
            assert keep((made / rel).read_text(), made.parent) == keep(path.read_text(), written.parent)
        elif rel.suffix == ".pt":
            import torch

            from tests.test_engine import _flat

            x, y = _flat(torch.load(made / rel)), _flat(torch.load(path))
            assert list(x) == list(y) and all(torch.equal(x[k], y[k]) for k in x), rel
        else:
            assert (made / rel).read_bytes() == path.read_bytes(), rel
    # The sweep's page: a job with its folder made is linked, the others say how to make one.
    compared = initlab_cli("report", str(tmp_path / "grouped"), cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    page = (tmp_path / "grouped" / "index.html").read_text()
    assert 'href="5/' in page and 'href="4/' not in page and "--job 4` writes its folder" in page
    # The path form, a job already made: reported again, not trained again.
    again = initlab_cli("report", str(made), cwd=tmp_path)
    assert again.returncode == 0 and "trained again" not in again.stdout
    missing = initlab_cli("report", str(tmp_path / "grouped"), "--job", "99", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith(
        f"job 99 is not in the group records of {tmp_path / 'grouped'} (jobs 0–7)")


def test_nan_is_read_back_as_nan(tmp_path):
    """A diverged job's NaN losses survive the record (JSON has no NaN: its summary's does)."""
    cfg = compose_config(config_name="smoke")
    where = group_dir(tmp_path, 1)
    write_group_file(where, 1, _params(cfg), 1)
    writer = GroupRecordWriter(where, 0, _params(cfg))
    writer.job_row(0, {"status": "diverged", "seed": 0, "config": {}, "epochs_run": 1,
                       "metrics": {"train": {"loss": math.nan, "acc": 0.5}}}, [])
    writer.metric_rows(0, [(1, math.nan, 0.5, math.inf, 0.5)])
    writer.flush()
    job = read_groups(tmp_path)[0]
    assert math.isnan(job.summary["metrics"]["train"]["loss"]) and math.isnan(job.metrics["train_loss"][0])
    assert job.metrics["dev_loss"] == [math.inf]


# --------------------------------------------------------------------------- submitit
def _wait_for(condition, proc, timeout: float = 120) -> None:
    """Until ``condition()``; between looks, a wait on the sweep itself (one that ends first
    fails the test at once), as tests/test_faults.py waits."""
    import subprocess
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the sweep ended (exit {proc.returncode}) first: {proc.stderr.read()}")
    raise AssertionError("timed out")


def _rows(path: Path, table: str) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for part in sorted(path.glob(f"{table}/*.parquet"))
            for row in pq.read_table(part).to_pylist()]


@pytest.mark.slow
def test_chunks_run_as_submitit_tasks_and_killed_ones_keep_a_consistent_record(tmp_path):
    """hydra.launcher.executor=submitit_local: each chunk is a task in a process of its own
    (four at once). The long chunks' tasks get SIGTERM (their time limit) once they have
    streamed epochs: those jobs end interrupted with every epoch they ran, the short ones
    complete, and the comparison names the interrupted ones."""
    import signal
    import subprocess
    import sys

    pytest.importorskip("submitit")
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "initlab.cli", "run", "-m", "-cn", "smoke", *SIZES,
               "seed=0,1", "trainer.epochs=4,1000000", "trainer.flush_every_s=0.2",
               "hydra/launcher=batched", "hydra.launcher.executor=submitit_local",
               "hydra.launcher.max_members=1", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # Jobs 1 and 3 (trainer.epochs=1000000) are the group of job 1, a task each.
    long_group = sweep_dir / "groups" / "1"

    def streamed(job: int) -> int:
        return sum(r["job"] == job for r in _rows(long_group, "metrics"))

    try:
        _wait_for(lambda: streamed(1) >= 3 and streamed(3) >= 3, proc)
        for row in _rows(long_group, "jobs"):
            os.kill(json.loads(row["summary"])["process"]["pid"], signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "4 tasks submitted through submitit_local" in out
    pids = {json.loads(r["summary"])["process"]["pid"] for g in (sweep_dir / "groups").iterdir()
            for r in _rows(g, "jobs")}
    assert len(pids) == 4 and proc.pid not in pids  # a process per task, not the launcher's
    from initlab.report.compare import read_sweep

    jobs, _ = read_sweep(sweep_dir)
    assert [j.status for j in jobs] == ["completed", "interrupted", "completed", "interrupted"]
    for job in jobs[1::2]:
        assert 3 <= job.summary["epochs_run"] == len(job.metrics["epoch"]) < 1000000
    assert [r["status"] for r in read_comparison(sweep_dir)] == [j.status for j in jobs]


def test_jobs_that_differ_in_their_seed_share_one_check_but_the_seeds_own(tmp_path):
    """The launcher checks one config for a seed sweep: a bad seed still fails its job alone,
    in the words a run alone would use, and the others train."""
    from initlab.run import run_from_hydra
    from tests.test_batched_launcher import _multirun

    sweep_dir = tmp_path / "sweep"
    with pytest.raises(SystemExit):  # a failed job fails the sweep's exit, as Hydra's own
        _multirun(sweep_dir, "batched", run_from_hydra, ["hydra.launcher.job_folders=never"],
                  overrides=["seed=3,-1,4", "trainer.epochs=2", *SIZES])
    failed = json.loads((sweep_dir / "1" / "summary.json").read_text())  # a failed check keeps a folder
    assert failed["status"] == "failed" and failed["error"].startswith("seed must be an integer in [0, ")
    jobs = read_groups(sweep_dir)
    assert sorted(jobs) == [0, 2] and {j.status for j in jobs.values()} == {"completed"}


@pytest.mark.slow
def test_a_paper_presets_claims_read_from_group_records_equal_those_from_folders(tmp_path):
    """experiment=lu2019 (a claim on each job's init_signal) on 2 x 6 seeds, with and without
    job folders: the same claim table."""
    runs = {}
    for mode in ("always", "never"):
        sweep_dir = tmp_path / mode
        result = initlab_cli("run", "-m", "experiment=lu2019", "seed=range(0,6)",
                             f"hydra.launcher.job_folders={mode}", f"hydra.sweep.dir={sweep_dir}",
                             "report.quiet=true", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        runs[mode] = (sweep_dir / "paper.csv").read_text()
    assert (tmp_path / "never" / "groups").is_dir() and not (tmp_path / "never" / "0").exists()
    assert runs["never"] == runs["always"] and "lu2019" in runs["never"]


def test_a_job_written_again_by_a_later_writer_is_read_from_its_last_writer_alone(tmp_path):
    """A task requeued after its time limit trains a job again: its new rows win, whatever
    job its writer starts at, and the earlier try's rows (epochs 1-2) are not mixed in."""
    cfg = compose_config(config_name="smoke")
    where = group_dir(tmp_path, 1)
    write_group_file(where, 1, _params(cfg), 2)
    first = GroupRecordWriter(where, 5, _params(cfg))
    first.job_row(5, {"status": "running", "seed": 5, "config": {}, "epochs_run": 0}, ["seed=5"])
    first.metric_rows(5, [(1, 0.7, 0.5, 0.69, 0.5), (2, 0.6, 0.6, 0.65, 0.55)])
    first.grad_norm_rows(5, [0], [1], [[0.1] * len(_params(cfg))])
    first.flush()
    again = GroupRecordWriter(where, 4, _params(cfg))  # a later try
    assert again.prefix > first.prefix
    again.metric_rows(5, [(1, 0.5, 0.7, 0.49, 0.7), (2, 0.4, 0.8, 0.45, 0.75), (3, 0.3, 0.9, 0.4, 0.8)])
    again.grad_norm_rows(5, [0], [1], [[0.2] * len(_params(cfg))])
    again.job_row(5, {"status": "completed", "seed": 5, "config": {}, "epochs_run": 3}, ["seed=5"])
    again.flush()
    job = read_groups(tmp_path)[5]
    assert job.status == "completed" and job.metrics["train_loss"] == [0.5, 0.4, 0.3]
    # A job's running row and its final row in one flush: its .hydra/ files are kept.
    last = GroupRecordWriter(where, 6, _params(cfg))
    last.job_row(6, {"status": "running", "seed": 6, "config": {}}, ["seed=6"], {".hydra/x.yaml": "x"})
    last.job_row(6, {"status": "completed", "seed": 6, "config": {}, "epochs_run": 0}, ["seed=6"])
    last.flush()
    assert read_job_summary(tmp_path, 6)[2]["hydra_files"] == {".hydra/x.yaml": "x"}
    assert {norm for *_, norm in grad_norm_rows(where, 5)} == {0.2}


def test_a_requeued_task_trains_again_only_the_jobs_that_did_not_run_to_their_end(tmp_path):
    """submitit's requeue runs the same chunk again: a job whose last row is completed is
    kept as it is, an interrupted one trains again (and then its new rows are its record)."""
    pytest.importorskip("submitit")
    from hydra_plugins.initlab_batched_launcher._tasks import ChunkSpec, ChunkTask
    from initlab.view import to_plain

    cfgs = [compose_config(*SIZES, f"seed={s}", "trainer.epochs=2", config_name="smoke") for s in (0, 1)]
    where = group_dir(tmp_path, 1)
    write_group_file(where, 1, _params(cfgs[0]), 2)
    earlier = GroupRecordWriter(where, 0, _params(cfgs[0]))
    earlier.job_row(0, {"status": "interrupted", "seed": 0, "config": to_plain(cfgs[0]), "epochs_run": 1},
                    ["seed=0"])
    earlier.metric_rows(0, [(1, 0.7, 0.5, 0.69, 0.5)])
    earlier.job_row(1, {"status": "completed", "seed": 1, "config": to_plain(cfgs[1]), "epochs_run": 2},
                    ["seed=1"])
    earlier.metric_rows(1, [(1, 0.7, 0.5, 0.69, 0.5), (2, 0.6, 0.6, 0.65, 0.55)])
    earlier.flush()
    spec = ChunkSpec(1, [to_plain(c) for c in cfgs], [GroupSlot(where, 0), GroupSlot(where, 1)],
                     [["seed=0"], ["seed=1"]], "cpu", 1)
    ends = ChunkTask()(spec)
    assert [e["status"] for e in ends] == ["completed", "completed"]
    jobs = read_groups(tmp_path)
    assert jobs[0].status == "completed" and jobs[0].metrics["epoch"] == [1, 2]
    assert jobs[0].metrics["train_loss"][0] != 0.7  # trained again, its own rows
    assert jobs[1].metrics["train_loss"] == [0.7, 0.6]  # kept as it was
