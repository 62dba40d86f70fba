"""Helpers for the diagnosis tests: compose a config, run the lab in-process, and write
small hand-made run records whose findings are known by construction."""

from pathlib import Path

from hydra import compose, initialize_config_module

from initlab.cli import _register_resolvers
from initlab.config import register_configs
from initlab.record import RecordWriter

register_configs()
_register_resolvers()


def compose_config(*overrides: str, config_name: str = "config"):
    """The config `initlab run -cn config_name overrides...` would run."""
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose(config_name, overrides=[*overrides, "trainer.progress=false"])


def run_quietly(out_dir: Path, *overrides: str, config_name: str = "config") -> dict:
    from initlab.run import run

    return run(compose_config(*overrides, config_name=config_name), out_dir, quiet=True)


def write_record(
    run_dir: Path,
    *,
    depth: int = 3,
    width: int = 4,
    act: str = "relu",
    grad_norms: dict[int, dict[str, float]] | None = None,
    units: list[tuple[int, str, int, float, float]] = (),
    metrics: list[tuple[int, float, float, float, float]] = (),
    diagnose: dict | None = None,
    status: str = "completed",
    epochs_run: int | None = None,
) -> Path:
    """A run directory with just the files the diagnosis reads.

    ``grad_norms`` maps step -> {param: norm} (one step per epoch, full batch);
    ``units`` rows are (epoch, layer, unit, frac_active, frac_saturated);
    ``metrics`` rows are (epoch, train_loss, train_acc, dev_loss, dev_acc).
    """
    sizes = [2] + [width] * (depth - 1) + [1]
    shapes = {}
    for k in range(1, depth + 1):
        shapes[f"fc{k}.weight"] = [sizes[k], sizes[k - 1]]
        shapes[f"fc{k}.bias"] = [sizes[k]]
    writer = RecordWriter(run_dir)
    config = {
        "model": {"depth": depth, "width": width},
        "act": {"name": act},
        "init": {"name": "normal", "std": 1.0, "bias": 0.0},
        "optim": {"name": "sgd", "lr": 0.1},
        "diagnose": diagnose or {},
    }
    writer.write_summary({
        "status": status,
        "config": config,
        "param_shapes": shapes,
        "epochs_run": epochs_run if epochs_run is not None else len(metrics),
    })
    if grad_norms is not None:
        writer.write_csv_numbers("grad_norms.csv", [
            (step, step + 1, param, norm)
            for step, row in sorted(grad_norms.items()) for param, norm in row.items()
        ])
    writer.write_csv_numbers("units.csv", units)
    writer.write_csv_numbers("metrics.csv", metrics)
    return run_dir


def layer_norms(depth: int, weights: list[float], bias: float = 0.1) -> dict[str, float]:
    """{param: norm} for one step: the given weight-gradient norms, a fixed bias norm."""
    row = {}
    for k, w in enumerate(weights, start=1):
        row[f"fc{k}.weight"] = w
        row[f"fc{k}.bias"] = bias
    assert len(weights) == depth
    return row
