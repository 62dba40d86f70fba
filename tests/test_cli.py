"""The real `initlab` command in subprocesses: help, bad input, a run, a sweep, the smoke config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import initlab_cli, read_summary

BAD_INPUTS = [
    (["act=foo"], "choose from: custom, elu, gelu"),
    (["init=bar"], "choose from: constant"),
    (["model.depth=0"], "model.depth must be >= 1"),
    (["model.width=-1"], "model.width must be >= 1"),
    (["optim.lr=abc"], "could not be converted to Float"),
    (["optim.lr=-1"], "optim.lr must be > 0"),
    (["data.noise=-1"], "data.noise must be >= 0"),
    (["data.n_train=990"], "larger than data.n_samples=1000"),
    (["nonsense_key=1"], "nonsense_key is not a config key (keys: data, model, act"),
    (["model.depht=3"], "model.depht is not a config key (keys of model: name, depth, width"),
    (["init.std=0.5"], "init.std does not apply to init=kaiming_normal (its keys: name, bias, "
                       "bias_std, mode, gain); it belongs to init=normal"),
    (["+init.std=0.5"], "init.std does not apply to init=kaiming_normal"),
    (["trainer.threads=0"], "trainer.threads must be >= 1"),
    (["-m", "act=relu,foo"], "act=foo is not an option"),
    # A bad value the sweep does not vary is bad for every job: refused before any folder.
    (["-m", "seed=0,1", "model.width=0"], "model.width must be >= 1"),
    (["-m", "seed=abc,1"], "could not be converted to Integer"),
    (["-m", "seed=1,abc"], "could not be converted to Integer"),
    (["-m", "modl.depth=1,2"], "modl is not a config key"),
    (["+foo=1"], "foo is not a config key"),
    (["seed=1180591620717411303424"], "seed must be an integer in [0, 9223372036854775]"),
    (["seed=-1"], "seed must be an integer in [0, "),
    (["init=uniform", "init.low=-inf"], "init.low must be a finite number (got -inf)"),
    (["init=uniform", "init.high=inf"], "init.high must be a finite number (got inf)"),
    (["init=uniform", "init.low=nan"], "init.low must be a finite number (got nan)"),
    (["init=normal", "init.std=inf"], "init.std must be a finite number (got inf)"),
    (["init=normal", "init.std=nan"], "init.std must be a finite number (got nan)"),
    (["init=xavier_uniform", "init.gain=inf"], "init.gain must be a finite number (got inf)"),
    (["optim.lr=inf"], "optim.lr must be a finite number (got inf)"),
    (["optim.lr=nan"], "optim.lr must be a finite number (got nan)"),
    (["optim.momentum=inf"], "optim.momentum must be a finite number (got inf)"),
    (["data.noise=inf"], "data.noise must be a finite number (got inf)"),
    (["data.noise=nan"], "data.noise must be a finite number (got nan)"),
]


# Each value check is tested in process (tests/test_options.py, tests/test_scale.py); here, that
# the command line says it in one line before any folder: a few cases in the fast run, every
# one in the slow run.
FAST_BAD_INPUTS = {"act=foo", "model.depth=0", "-m act=relu,foo", "+foo=1"}


@pytest.mark.parametrize("args, message", [
    pytest.param(args, message, id=" ".join(args),
                 marks=() if " ".join(args) in FAST_BAD_INPUTS else pytest.mark.slow)
    for args, message in BAD_INPUTS])
def test_bad_input_fails_in_one_line_without_a_record(tmp_path, args, message):
    result = initlab_cli("run", *args, f"hydra.run.dir={tmp_path}/run",
                         f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_missing_gpu_fails_in_one_line_before_any_record(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = initlab_cli("run", "trainer.device=cuda", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU is available" in lines[0]
    assert not (tmp_path / "run").exists()


def test_help_lists_every_group_and_does_not_import_torch(tmp_path):
    code = ("import sys; from initlab.cli import main\n"
            "sys.argv = ['initlab', 'run', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_NOT_IMPORTED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path).stdout
    assert "TORCH_NOT_IMPORTED" in out
    for line in ("act: custom, elu, gelu, identity, lrelu, relu, selu, sigmoid, silu, tanh",
                 "data: blobs, circles, custom, gaussian, moons, spirals, xor",
                 "experiment: dead_relu, glorot2010, he2015, lsuv2016, lu2019, phase_diagram, saxe2014, "
                 "schoenholz2017, vanishing_gradient, zero_init",
                 "optim: adam, momentum, sgd"):
        assert line in out
    assert "_schema" not in out


def test_top_level_help_version_and_unknown_command(tmp_path):
    assert "initlab run" in initlab_cli("--help", cwd=tmp_path).stdout
    assert initlab_cli("--version", cwd=tmp_path).stdout.startswith("initlab ")
    bad = initlab_cli("frobnicate", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = initlab_cli("run", "--cfg", "job", "experiment=dead_relu", cwd=tmp_path).stdout
    assert "bias: -8.0" in out and "depth: 5" in out and "name: relu" in out


def test_shell_completion_sees_through_the_run_subcommand(tmp_path):
    import os

    env = {**os.environ, "COMP_LINE": "initlab run act=re", "COMP_POINT": "18"}
    script = __import__("pathlib").Path(sys.executable).with_name("initlab")
    out = subprocess.run([str(script), "-sc", "query=bash"], env=env, capture_output=True,
                         text=True, cwd=tmp_path).stdout
    assert out.split() == ["act=relu"]


def test_single_run_end_to_end(tmp_path):
    result = initlab_cli("run", "init=zeros", "act=sigmoid", "trainer.epochs=30",
                         f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed" and summary["epochs_run"] == 30
    assert (run_dir / ".hydra" / "overrides.yaml").exists()
    assert "Final metrics" in result.stdout
    assert (run_dir / "tables" / "metrics.txt").read_text().strip() in result.stdout


@pytest.mark.slow  # ~3 s: the README's test command stays under its budget
def test_two_job_sweep_of_the_smoke_config(tmp_path):
    result = initlab_cli("run", "-m", "-cn", "smoke", "act=sigmoid,relu",
                         f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for job, act in (("0", "sigmoid"), ("1", "relu")):
        summary = read_summary(tmp_path / "sweep" / job)
        assert summary["status"] == "completed"
        assert summary["config"]["act"]["name"] == act
        # A job of a sweep draws nothing and prints one line; the sweep root compares.
        assert not (tmp_path / "sweep" / job / "figures").exists()
        (line,) = [x for x in lines if x.startswith(f"job {job} ")]
        assert f"act={act}" in line and ": completed; test acc " in line and len(line) <= 80
    assert (tmp_path / "sweep" / "figures" / "grad_norm_by_layer.png").exists()
    assert "Run configuration" not in result.stdout  # no per-job tables


@pytest.mark.slow
def test_report_full_draws_every_figure_at_run_time(tmp_path):
    result = initlab_cli("run", "-cn", "smoke", "report=full", f"hydra.run.dir={tmp_path}/run",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from initlab.report.figures import RUN_FIGURES

    drawn = {p.stem for p in (tmp_path / "run" / "figures").iterdir()}
    assert {s.name for s in RUN_FIGURES if s.key} < drawn
    assert "Training log" in result.stdout  # the full table set


@pytest.mark.slow
def test_a_single_run_draws_the_key_figures_and_brief_tables(tmp_path):
    result = initlab_cli("run", "-cn", "smoke", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from initlab.report.figures import RUN_FIGURES

    drawn = {p.stem for p in (tmp_path / "run" / "figures").iterdir()}
    assert drawn == {s.name for s in RUN_FIGURES if s.key}
    assert "Final metrics" in result.stdout and "Diagnosis" in result.stdout
    assert "Training log" not in result.stdout
    *_, record_line, page_line = result.stdout.rstrip().splitlines()
    assert record_line.endswith("4 figures)")
    assert page_line == f"Report page: {(tmp_path / 'run' / 'index.html').resolve().as_uri()}"


@pytest.mark.slow
def test_quiet_prints_only_where_the_sweep_went(tmp_path):
    result = initlab_cli("run", "-m", "-cn", "smoke", "seed=0,1", "report.quiet=true",
                         f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "sweep" / "index.html").resolve().as_uri()
    assert result.stdout.splitlines() == [
        f"Sweep: {tmp_path / 'sweep'} (2 jobs: 2 completed); page: {page}"]
    assert result.stderr == ""
    assert (tmp_path / "sweep" / "comparison.csv").exists()


@pytest.mark.slow
def test_default_outputs_go_under_outputs_runs(tmp_path):
    result = initlab_cli("run", "-cn", "smoke", "trainer.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = list((tmp_path / "outputs" / "runs").glob("*/*/summary.json"))
    assert len(summaries) == 1
    assert json.loads(summaries[0].read_text())["status"] == "completed"


@pytest.mark.slow
def test_list_of_a_run_lists_it_and_draws_nothing(tmp_path):
    run_dir = tmp_path / "run"
    assert initlab_cli("run", "-cn", "smoke", "report=minimal", f"hydra.run.dir={run_dir}",
                       cwd=tmp_path).returncode == 0
    result = initlab_cli("list", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout and "Run configuration" not in result.stdout
    assert not (run_dir / "figures").exists() and not (run_dir / "tables").exists()


def test_list_without_any_run_yet_says_so(tmp_path):
    result = initlab_cli("list", cwd=tmp_path)
    assert result.returncode == 0 and "No runs or sweeps yet" in result.stdout


def test_option_errors_of_report_are_one_line(tmp_path):
    result = initlab_cli("report", str(tmp_path), "--dpi", "100000", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--dpi: must be in [1, 1200]" in line


@pytest.mark.parametrize("line, offered", [("initlab ", "run report compare list export"),
                                           ("initlab r", "run report"), ("initlab report ", "")])
def test_completion_of_the_command_offers_the_commands(tmp_path, line, offered):
    import os

    env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
    script = Path(sys.executable).with_name("initlab")
    result = subprocess.run([str(script), "-sc", "query=bash"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == offered


def test_an_empty_run_dir_is_refused_rather_than_writing_into_the_current_folder(tmp_path):
    result = initlab_cli("run", "-cn", "smoke", "hydra.run.dir=", cwd=tmp_path)
    assert result.returncode == 2 and "hydra.run.dir is empty" in result.stderr
    assert list(tmp_path.iterdir()) == []


# Every way Hydra has of naming the config, and -m before or after the overrides: the same
# checks (initlab.preflight, a Hydra callback) refuse bad input in one line, before any folder.
FLAG_FORMS = [
    ["-cn=smoke"], ["--config-name", "smoke"], ["--config-name=smoke"],
    ["-cd", "{confdir}", "-cn", "mine"], ["-m", "-cn", "smoke"], ["-cn", "smoke", "seed=1,2", "-m"],
    ["-m", "seed=1,2", "-cn", "smoke"],  # overrides on both sides of a flag
]


@pytest.mark.parametrize("flags", [
    pytest.param(flags, id=" ".join(flags), marks=() if i in (0, 5, 6) else pytest.mark.slow)
    for i, flags in enumerate(FLAG_FORMS)])
def test_every_hydra_flag_form_gets_the_checks(tmp_path, flags):
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "mine.yaml").write_text("defaults:\n  - smoke\n  - _self_\n")
    args = [f.format(confdir=confdir) for f in flags]
    result = initlab_cli("run", *args, "model.depth=0", f"hydra.run.dir={tmp_path}/run",
                         f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["initlab run: error: model.depth must be >= 1 (got 0)"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_config_dir_run_refuses_a_folder_that_holds_a_record(tmp_path):
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "mine.yaml").write_text("defaults:\n  - smoke\n  - _self_\ntrainer:\n  epochs: 2\n")
    args = ["run", "-cd", str(confdir), "-cn", "mine", "report=minimal", f"hydra.run.dir={tmp_path}/run"]
    assert initlab_cli(*args, cwd=tmp_path).returncode == 0
    again = initlab_cli(*args, "seed=1", cwd=tmp_path)
    assert again.returncode == 2 and "already holds a run record" in again.stderr
    assert read_summary(tmp_path / "run")["seed"] == 0


@pytest.mark.parametrize("args, out, err", [
    (["-m", "experiment=dead_relu", "--cfg", "job"], "", "Only one of --run, --multirun, --cfg"),
    (["--cfg", "hydra", "-m", "act=relu,tanh"], "", "Only one of --run, --multirun, --cfg"),
    (["-m", "act=relu,tanh", "--help"], "== Configuration groups ==", ""),
], ids=["-m --cfg job", "--cfg hydra -m", "-m --help"])
def test_hydra_flag_combinations_answer_as_hydra_does_without_a_traceback(tmp_path, args, out, err):
    result = initlab_cli("run", *args, cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    assert out in result.stdout
    if err:
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert err in result.stderr
    else:
        assert result.returncode == 0 and result.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_a_launcher_of_the_missing_extra_names_the_install_command():
    from hydra.errors import MissingConfigException

    from initlab.preflight import explain

    error = MissingConfigException("missing", missing_cfg_file="hydra/launcher/joblib",
                                   options=["basic", "batched"])
    message = explain(error)
    assert message.startswith("hydra/launcher=joblib is not an option of 'hydra/launcher'")
    assert "pip install -e '.[launchers]'" in message
    other = explain(MissingConfigException("m", missing_cfg_file="act/foo", options=["relu"]))
    assert "pip install" not in other


def test_report_of_two_paths_points_to_compare(tmp_path):
    result = initlab_cli("report", str(tmp_path / "a"), str(tmp_path / "b"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"initlab compare {tmp_path / 'a'} {tmp_path / 'b'}" in line
