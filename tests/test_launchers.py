"""The comparison whichever launcher runs the jobs: joblib (local processes) and
submitit_local (submitit's local executor, the same code path as SLURM minus the cluster).

Each test runs a real two-job sweep; it is skipped only when the launcher plugin is not
installed (`pip install initlab[launchers]`).
"""

import importlib.util

import pytest

from tests.test_sweeps import COMPARISON_FIGURES, assert_complete_comparison, read_comparison, sweep

pytestmark = pytest.mark.slow  # every test here runs a sweep through another launcher

LAUNCHER_PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
}


def launcher_installed(module: str) -> bool:
    # find_spec imports the parent package first: without any plugin, `hydra_plugins`
    # itself is missing and find_spec raises instead of returning None.
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _require(launcher: str) -> None:
    if not launcher_installed(LAUNCHER_PLUGINS[launcher]):
        pytest.skip(f"{LAUNCHER_PLUGINS[launcher]} is not installed "
                    "(pip install -e '.[launchers]')")


@pytest.mark.parametrize("launcher", list(LAUNCHER_PLUGINS))
def test_a_two_job_sweep_ends_with_a_complete_comparison(tmp_path, launcher):
    _require(launcher)
    result, sweep_dir = sweep(tmp_path, "act=sigmoid,relu", launcher=launcher)
    assert result.returncode == 0, result.stderr
    assert_complete_comparison(sweep_dir, ["act=sigmoid", "act=relu"])
    assert "Sweep comparison" in result.stdout


@pytest.mark.parametrize("launcher", list(LAUNCHER_PLUGINS))
def test_a_failed_job_in_another_process_is_marked_failed(tmp_path, launcher):
    _require(launcher)
    result, sweep_dir = sweep(tmp_path, "model.depth=2,0", launcher=launcher)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    rows = read_comparison(sweep_dir)
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert {p.name for p in (sweep_dir / "figures").iterdir()} == COMPARISON_FIGURES
