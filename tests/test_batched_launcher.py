"""`hydra/launcher=batched` (hydra_plugins/initlab_batched_launcher): the job folders it
writes, its grouping line, a real sweep's comparison, and a bad job failing alone.

The launcher composes once per set of config-group choices and renders each job's
``.hydra/`` files from templates; the first test holds that to Hydra's basic launcher,
file by file, for a sweep mixing group and value overrides. The engine it drives
(``initlab.engine``) has tests of its own (equivalence with single runs).
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hydra_plugins.initlab_batched_launcher._core import grouping_line
from initlab.view import to_plain
from tests.test_sweeps import assert_complete_comparison, read_comparison, sweep

# Group overrides (act, init) and value overrides (seed, optim.lr, init.bias); with a list
# value the jobs take the launcher's DictConfig path, without one its ConfigView path.
PLAIN = ["act=relu,tanh", "init=normal,uniform", "seed=0,1", "optim.lr=0.1,0.3", "init.bias=0.5"]
MIXED = [*PLAIN, "trainer.recorders=[grad_norms]"]


def _multirun(sweep_dir: Path, launcher: str, task, extra: list[str], overrides=MIXED) -> None:
    """An in-process `initlab run -m -cn smoke ...` with the given task function, through
    Hydra's own @hydra.main."""
    import sys

    import hydra

    from initlab.cli import CONFIG_PATH, _register_resolvers
    from initlab.config import register_configs

    register_configs()
    _register_resolvers()
    argv = sys.argv
    sys.argv = ["initlab", "-m", *overrides, *extra, "report.sweep=false", "report.quiet=true",
                f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"]
    try:
        hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="smoke")(task)()
    finally:
        sys.argv = argv


SWEEPS = [
    ["act=relu,tanh", "seed=range(0,3)"], ["seed=1", "seed=2,3"], ["act=relu,tanh", "act=elu"],
    ["+experiment=dead_relu,zero_init", "~paper"], ["trainer.recorders=[grad_norms,weights]", "x='a,b'"],
    ["optim.lr=0.1,0.3", "data=glob(x*)", "seed=choice(1,2)"], ["seed=interval(0,1)"], [],
]


@pytest.mark.parametrize("arguments", SWEEPS, ids=[" ".join(a) or "(none)" for a in SWEEPS])
def test_the_initlab_sweeper_expands_a_sweep_as_hydras_basic_sweeper(arguments):
    """hydra/sweeper=initlab (public API) against the BasicSweeper it stands for."""
    from hydra import initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from hydra_plugins.initlab_batched_launcher.sweeper import expand

    with initialize_config_module("initlab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        try:
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
            (expected,) = BasicSweeper.split_arguments(parsed, None)
        except HydraException:
            with pytest.raises(HydraException):
                expand(arguments, loader)
            return
        assert expand(arguments, loader) == [[str(o) for o in job] for job in expected]


# What a job's overrides may do to the composed config: group choices (a preset among them),
# values of every type, interpolations, lists, `+`/`++`/`~` keys, and mistakes Hydra refuses.
CORPUS = [
    [], ["seed=3"], ["act=tanh", "optim.lr=0.3"], ["init=normal", "init.std=0.25", "init.bias=-1"],
    ["experiment=dead_relu"], ["experiment=dead_relu", "model.width=7"], ["+experiment=zero_init"],
    ["trainer.log_every=${trainer.epochs}"], ["optim.lr=${init.bias}", "init.bias=0.5"],
    ["trainer.recorders=[grad_norms]"], ["trainer.recorders=[]"], ["++seed=4"], ["++paper=x"],
    ["+paper=x"], ["~paper"], ["~init.bias"], ["+init.std=0.5"], ["seed=abc"], ["nonsense=1"],
    ["+seed=3"], ["~nonsense"], ["optim.lr=1e-3", "data.noise=0"], ["overwrite=true"],
    ["data=xor", "data.noise=0.05", "seed=2"], ["report=minimal", "report.dpi=50"],
]


@pytest.mark.parametrize("overrides", CORPUS, ids=[" ".join(c) or "(none)" for c in CORPUS])
def test_the_launchers_composition_equals_hydras(tmp_path, overrides):
    """Each job's config, folder name and error as the batched launcher builds them from a
    few compositions, against Hydra's own composition of that job (load_sweep_config)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from hydra_plugins.initlab_batched_launcher._compose import Composer, _container
    from initlab.cli import _register_resolvers, group_options
    from initlab.config import register_configs
    from initlab.preflight import one_line

    register_configs()
    _register_resolvers()
    with initialize_config_module("initlab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("smoke", [f"hydra.sweep.dir={tmp_path}", "hydra.mode=MULTIRUN"],
                                           RunMode.MULTIRUN)
        job = Composer(loader, master, set(group_options())).prepare(0, list(overrides))
        try:
            expected = loader.load_sweep_config(master, list(overrides))
        except Exception as e:
            assert job.error == one_line(f"{e}; {e.__cause__}" if e.__cause__ else str(e))
            return
    assert job.error is None, job.error
    job_node = OmegaConf.to_container(expected.hydra.job, resolve=False)  # as hydra.yaml has it
    assert job.override_dirname == job_node["override_dirname"]
    task = OmegaConf.to_container(expected, resolve=False, enum_to_str=True)
    task.pop("hydra")
    assert _container(job.cfg) == task
    assert OmegaConf.to_container(job.full_config().hydra.overrides, resolve=False) == \
        OmegaConf.to_container(expected.hydra.overrides, resolve=False)


def _job_files(sweep_dir: Path) -> dict[str, dict[str, object]]:
    """{job folder: {file: its content as plain values}} for every job's .hydra/ files."""
    out = {}
    for hydra_dir in sorted(sweep_dir.glob("**/.hydra")):
        job = str(hydra_dir.parent.relative_to(sweep_dir))
        out[job] = {p.name: OmegaConf.to_container(OmegaConf.load(p), resolve=False)
                    for p in sorted(hydra_dir.iterdir())}
    return out


def _comparable_hydra(files: dict, sweep_dir: Path) -> dict:
    """hydra.yaml less what differs because the two sweeps differ in launcher and folder:
    the launcher node and choice, hydra.overrides.hydra (hydra/launcher=, hydra.sweep.dir=),
    and the sweep folder inside hydra.sweep.dir and hydra.runtime.output_dir. Nothing else
    (no timestamp: `${now:}` stays an unresolved interpolation in hydra.yaml)."""
    h = files["hydra.yaml"]["hydra"]
    assert h["sweep"]["dir"] == str(sweep_dir)
    assert h["runtime"]["output_dir"].startswith(str(sweep_dir) + "/")
    h["runtime"]["output_dir"] = h["runtime"]["output_dir"][len(str(sweep_dir)):]
    for key in ("launcher",):
        h.pop(key)
    h["sweep"].pop("dir")
    h["runtime"]["choices"].pop("hydra/launcher")
    h["overrides"]["hydra"] = [o for o in h["overrides"]["hydra"]
                               if not o.startswith(("hydra/launcher=", "hydra.sweep.dir="))]
    return files


# Both ways the launcher builds a job's config, and both ways it places the job's folder
# (the default subdir, or one resolved in the job's own config).
@pytest.mark.parametrize("overrides, config_type, extra", [
    (PLAIN, "ConfigView", []),
    (MIXED, "DictConfig", ["hydra.sweep.subdir=${hydra.job.override_dirname}"]),
], ids=["plain-values-default-subdir", "with-a-list-override-dirname-subdir"])
@pytest.mark.slow
def test_job_files_equal_those_of_hydras_basic_launcher(tmp_path, monkeypatch, extra, overrides,
                                                        config_type):
    import initlab.engine
    from initlab.run import run_from_hydra

    trained = []

    def no_training(cfgs, out_dirs, device="cpu", progress=None, on_member_done=None, overrides=None,
                    threads=None, launcher=None):
        trained.extend(cfgs)
        return [{"status": "completed"} for _ in cfgs]  # only the .hydra/ files are compared

    monkeypatch.setattr(initlab.engine, "train_group", no_training)
    basic_dir, batched_dir = tmp_path / "basic", tmp_path / "batched"
    _multirun(basic_dir, "basic", lambda cfg: None, extra, overrides)
    _multirun(batched_dir, "batched", run_from_hydra, extra, overrides)
    assert {type(c).__name__ for c in trained} == {config_type}  # the path under test was taken

    basic, batched = _job_files(basic_dir), _job_files(batched_dir)
    assert len(basic) == 16 and list(batched) == list(basic)
    for job in basic:
        assert set(batched[job]) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        # config.yaml and overrides.yaml: equal as they are.
        assert batched[job]["config.yaml"] == basic[job]["config.yaml"], job
        assert batched[job]["overrides.yaml"] == basic[job]["overrides.yaml"], job
        assert (_comparable_hydra(batched[job], batched_dir)["hydra.yaml"]
                == _comparable_hydra(basic[job], basic_dir)["hydra.yaml"]), job
    # The value overrides did land, typed as Hydra types them (the check is not vacuous).
    first = basic[next(iter(basic))]["config.yaml"]
    assert first["init"]["bias"] == 0.5 and first["optim"]["lr"] == 0.1
    assert first["trainer"]["recorders"] == (["grad_norms"] if overrides is MIXED else
                                             ["grad_norms", "weights", "activations"])
    # What the trainer got is the job's config.yaml (the record's progress setting aside).
    by_seed_lr = {(c.seed, c.optim.lr, c.act.name, c.init.name): to_plain(c) for c in trained}
    for job in basic:
        cfg = basic[job]["config.yaml"]
        got = by_seed_lr[cfg["seed"], cfg["optim"]["lr"], cfg["act"]["name"], cfg["init"]["name"]]
        got["trainer"]["progress"] = cfg["trainer"]["progress"]
        assert got == cfg, job


def test_template_values_are_written_as_omegaconfs_dumper_writes_them():
    """The launcher writes ints, plain strings and lists of them into .hydra/ templates
    itself; YAML's own dump (with OmegaConf's dumper, as Hydra saves) is the reference,
    strings that look like numbers, bools, nulls or dates included."""
    import math
    import random

    import yaml
    from omegaconf._utils import get_omega_conf_dumper

    from hydra_plugins.initlab_batched_launcher._compose import _flow, dump, dump_str_list

    def reference(value):
        text = yaml.dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False,
                         width=math.inf, Dumper=get_omega_conf_dumper()).rstrip("\n")
        return text[: -len("\n...")] if text.endswith("\n...") else text

    rng = random.Random(0)
    cases = [0, 7, -3, 10**20, "seed=5", "/tmp/sweep/7", "1e5", "1.0", "09", "0x1f", "true", "y",
             "no", "null", "~", "NaN", "inf", "2001-12-14", "init.std=0.01", "a=b=c", [],
             ["seed=5", "act=relu"], ["1.0"], ["x=[a]", "y"], ["a, b"], "x=[a]",
             "act=relu,seed=3", ",a", "a,", "1,000", ["a,b"], "a,,b", "1,2"]
    cases += ["".join(rng.choice("ab1e05.-_=+/nNyYtTrI:x,") for _ in range(rng.randint(1, 6)))
              for _ in range(5000)]
    for value in cases:
        assert _flow(value) == reference(value), value
    # overrides.yaml: a block list of strings.
    lists = [[], ["seed=5"], ["seed=5", "act=relu", "init.std=0.01"], ["x=[a]", "y"], ["1e5"]]
    lists += [[rng.choice(cases[23:]) for _ in range(3)] for _ in range(500)]
    for value in lists:
        assert dump_str_list(value) == dump(value), value


def test_grouping_line():
    assert grouping_line(24, [16, 4, 4], 3, 4096, 0, 0) == "24 jobs → 3 groups of 16, 4, 4"
    assert grouping_line(3, [2], 1, 4096, 1, 0) == "3 jobs → 1 group of 2; 1 failed its checks"
    why = "act=custom: the stacked trainer takes initlab's own components only"
    assert grouping_line(3, [1, 1, 1], 3, 4096, 0, 2, (why, why)) == \
        f"3 jobs → 3 groups of 1, 1, 1; 2 train alone ({why})"
    line = grouping_line(10000, [10000], 3, 4096, 0, 0)
    assert line == ("10000 jobs → 1 group of 10000, trained in 3 chunks of at most 4096 "
                    "(hydra.launcher.max_members)")
    assert grouping_line(20, [2] * 10, 10, 4096, 0, 0) == "20 jobs → 10 groups of 10 × 2"


@pytest.mark.slow
def test_a_batched_cli_sweep_ends_with_a_complete_comparison(tmp_path, monkeypatch):
    result, sweep_dir = sweep(tmp_path, "seed=0,1,2", "act=relu,tanh", launcher="batched")
    assert result.returncode == 0, result.stderr
    assert "6 jobs → 2 groups of 3, 3" in result.stdout
    assert_complete_comparison(sweep_dir, [f"seed={s} act={a}" for s in (0, 1, 2)
                                           for a in ("relu", "tanh")])
    # One line per job, as under the basic launcher.
    for job in range(6):
        assert sum(line.startswith(f"job {job} ") for line in result.stdout.splitlines()) == 1
    assert "Sweep comparison" in result.stdout and "Traceback" not in result.stderr

    # A big sweep's tables show its first jobs, comparison.csv every job.
    from rich.console import Console

    from initlab.report import compare

    monkeypatch.setattr(compare, "TABLE_MAX_JOBS", 2)
    console = Console(record=True, width=200)
    compare.render_sweep(sweep_dir, console=console)
    text = console.export_text()
    assert "the first 2 of 6 jobs; every job is in comparison.csv" in " ".join(text.split())
    assert "act=tanh" in text and "seed=2 " not in text
    assert len(read_comparison(sweep_dir)) == 6


@pytest.mark.slow  # ~3 s: the README's test command stays under its budget
def test_a_big_batched_sweep_prints_its_groups_not_a_line_per_job(tmp_path):
    """Past TERMINAL_JOBS jobs the chunk's bar stands for its jobs; initlab's own per-job
    callback events (the progress line of jobs run one after another) are not sent, since
    each would copy the job's whole config."""
    from hydra.experimental.callback import Callback

    from hydra_plugins.initlab_batched_launcher._core import _overrides_job_events
    from initlab.report.compare import TERMINAL_JOBS, SweepComparison

    class PerJob(Callback):
        def on_job_end(self, config, **kwargs):
            pass

    holder = type("Callbacks", (), {})
    holder.callbacks = [SweepComparison()]
    assert not _overrides_job_events(holder)
    holder.callbacks.append(PerJob())
    assert _overrides_job_events(holder)

    jobs = TERMINAL_JOBS + 4
    result, sweep_dir = sweep(tmp_path, f"seed=range(0,{jobs})", launcher="batched")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{jobs} jobs → 1 group of {jobs}" in lines
    assert not [line for line in lines if line.startswith("job ")]
    assert f"{jobs} jobs: {jobs} completed" in lines
    assert len(read_comparison(sweep_dir)) == jobs


@pytest.mark.slow
def test_a_bad_value_fails_its_job_alone_in_one_line(tmp_path):
    result, sweep_dir = sweep(tmp_path, "model.depth=2,0", launcher="batched")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("initlab: error:")]
    (error,) = errors  # the job's label (job 1 and its overrides), then why
    assert error.startswith("initlab: error: job 1 ") and "model.depth=0" in error
    assert error.endswith(": model.depth must be >= 1 (got 0)")
    assert "2 jobs → 1 group of 1; 1 failed its checks" in result.stdout
    rows = read_comparison(sweep_dir)
    assert [(r["label"], r["status"]) for r in rows] == [
        ("model.depth=2", "completed"), ("model.depth=0", "failed")]
    assert "model.depth must be >= 1" in rows[1]["error"]
    # The failed job's folder is an ordinary one: its .hydra/ files and a failed summary.
    assert {p.name for p in (sweep_dir / "1" / ".hydra").iterdir()} == {
        "config.yaml", "hydra.yaml", "overrides.yaml"}


def test_the_launchers_thread_setting_is_checked_before_the_sweep():
    import pytest

    from hydra_plugins.initlab_batched_launcher._core import LauncherError, check_settings

    assert check_settings(4096, None, None)[1] >= 1  # null: one per core
    from initlab.budget import cores

    assert check_settings(4096, "cpu", cores()) == ("cpu", cores())
    for bad in (0, -1, "two", True, cores() + 1, 100000):  # 100000: torch would segfault
        with pytest.raises(LauncherError, match="hydra.launcher.threads must be a whole number"):
            check_settings(4096, None, bad)



class _Loader:
    """A config loader whose every composition of a job is counted, and refused."""

    def __init__(self):
        self.composed = 0

    def load_sweep_config(self, master_config, sweep_overrides):
        self.composed += 1
        raise ValueError(f"cannot compose {sweep_overrides}")


class _Launcher:
    def __init__(self, composes_each_job: bool):
        self.composes_each_job = composes_each_job
        self.launched = []

    def launch(self, batch, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.launched.append((initial_job_idx, [list(job) for job in batch]))
        return [JobReturn(status=JobStatus.COMPLETED) for _ in batch]


@pytest.mark.parametrize("composes_each_job", [True, False])
def test_the_initlab_sweeper_composes_jobs_only_for_a_launcher_that_does_not(tmp_path, composes_each_job):
    """A launcher that composes every job itself (the batched one) gets the sweep's batches
    without a composition of each job first; any other is preceded by Hydra's check, and a
    sweep it refuses before any job leaves no folder."""
    from hydra.types import HydraContext

    from hydra_plugins.initlab_batched_launcher.sweeper import InitlabSweeper

    sweeper = InitlabSweeper(max_batch_size=2, params={"act": "relu,tanh"})
    loader, launcher = _Loader(), _Launcher(composes_each_job)
    sweeper.hydra_context = HydraContext(config_loader=loader, callbacks=None)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    sweeper.launcher = launcher
    if composes_each_job:
        sweeper.sweep(["seed=1,2"])
        assert loader.composed == 0
        assert launcher.launched == [(0, [["act=relu", "seed=1"], ["act=relu", "seed=2"]]),
                                     (2, [["act=tanh", "seed=1"], ["act=tanh", "seed=2"]])]
        assert (tmp_path / "sweep" / "multirun.yaml").exists()
    else:
        with pytest.raises(ValueError, match="cannot compose"):
            sweeper.sweep(["seed=1,2"])
        assert loader.composed == 1 and launcher.launched == []
        assert not (tmp_path / "sweep").exists()


def test_a_sweep_of_hydras_basic_sweeper_is_read_as_this_one():
    """multirun.yaml of an older sweep names Hydra's basic sweeper: its jobs are expanded the
    same way, so the comparison still lists the planned jobs (the name comes from Hydra's
    own config store, not written here)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference

    from hydra_plugins.initlab_batched_launcher.sweeper import expanding_sweeper

    assert expanding_sweeper(f"{BasicSweeper.__module__}.{BasicSweeper.__name__}")
    assert expanding_sweeper("hydra_plugins.initlab_batched_launcher.sweeper.InitlabSweeper")
    assert not expanding_sweeper("hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")
