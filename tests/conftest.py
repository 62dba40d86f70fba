"""Shared fixtures: a composed Hydra config (as `initlab run` would build it) and run helpers."""

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from initlab.cli import _register_resolvers
from initlab.config import register_configs

register_configs()
_register_resolvers()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (the README's test command runs one worker per core) each worker,
    # and each `initlab` it spawns, uses one thread: two workers on two cores, not four
    # threads fighting over them. The lab's nets are tiny; one thread is also their fastest.
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def compose_config(*overrides: str, config_name: str = "config"):
    """The config `initlab run -cn config_name overrides...` would run, without Hydra's runtime
    (a copy of its own: a test may change it)."""
    return copy.deepcopy(_composed(overrides, config_name))


@functools.cache
def _composed(overrides: tuple[str, ...], config_name: str):
    # A composition costs ~0.1 s and the suite asks for the same one again and again (400
    # compositions, 220 different): composed once, the README's test command saves ~20 CPU-s.
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture
def cfg_factory():
    return compose_config


@pytest.fixture
def run_lab(tmp_path):
    """Run the lab in-process into a fresh directory; returns (run_dir, summary)."""
    from initlab.run import run

    counter = iter(range(1000))

    def _run(*overrides: str, config_name: str = "config"):
        cfg = compose_config(*overrides, "trainer.progress=false", config_name=config_name)
        out = tmp_path / f"run{next(counter)}"
        summary = run(cfg, out, quiet=True)
        return out, summary

    return _run


def initlab_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `initlab` command in a subprocess (a headless, colour-free terminal)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_COLOR": "1", "COLUMNS": "120"}
    env.pop("HYDRA_FULL_ERROR", None)
    script = Path(sys.executable).with_name("initlab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "initlab.cli"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
