"""``hydra/sweeper=initlab`` (initlab's default): Hydra's basic sweep, written with its public API.

A sweep is the cartesian product of its overrides' values (``hydra.sweeper.params`` first,
then the command line's, a later value of a key replacing an earlier one), launched in
batches of ``max_batch_size``, as Hydra's BasicSweeper does. Two differences:

- Before each batch BasicSweeper composes every job once only to check that it composes
  (~0.12 s a job: 25 s of a 200-job sweep). A launcher that composes and checks every job
  itself before it starts any (``composes_each_job = True``: the batched launcher, which
  fails a job that does not compose alone, in one line) is not preceded by that.
- A sweep refused before any job started (a job that does not compose) leaves no folder.
- A failed job ends the sweep with its own error alone (each initlab job has said what
  failed, in one line), not after a line of Hydra's naming its overrides.

:func:`expand` is also how ``initlab compare`` knows which jobs a sweep planned.
"""

import contextlib
import functools
import io
import itertools
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


# Sweepers whose jobs are exactly expand(params + task overrides), as multirun.yaml names them:
# this one, and Hydra's basic sweeper (its _target_ as Hydra's own ConfigStore entry gives it).
def expanding_sweeper(target: Any) -> bool:
    return target == "hydra_plugins.initlab_batched_launcher.sweeper.InitlabSweeper" or \
        target == _basic_sweeper_target()


@functools.cache
def _basic_sweeper_target() -> str:
    Plugins.instance()  # Hydra's own sweepers register their configs as it finds them
    return str(ConfigStore.instance().load("hydra/sweeper/basic.yaml").node.get("_target_"))

MULTIRUN_FILE = "multirun.yaml"


def expand(arguments: list[str], config_loader: Any = None) -> list[list[str]]:
    """Every job's overrides, in launch order (BasicSweeper.split_arguments, one batch);
    ``glob(...)`` needs the ``config_loader`` to list a group's options."""
    columns: dict[str, list[str]] = {}
    for o in OverridesParser.create(config_loader=config_loader).parse_overrides(arguments):
        key = o.get_key_element()
        if o.is_sweep_override() and not o.is_discrete_sweep():
            raise HydraException(f"the {o.value_type.name} sweep of {key} is not a list of values "
                                 "(use hydra/sweeper=optuna or another sweeper that samples)")
        values = o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()]
        columns[key] = [f"{key}={v}" for v in values]
    return [list(job) for job in itertools.product(*columns.values())]


class InitlabSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict] = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = params or {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        jobs = expand([f"{k}={v}" for k, v in self.params.items()] + list(arguments),
                      self.hydra_context.config_loader)
        size = self.max_batch_size if self.max_batch_size not in (None, -1) else max(len(jobs), 1)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / MULTIRUN_FILE)
        checks = not getattr(self.launcher, "composes_each_job", False)
        returns = []
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            if checks:
                try:
                    self.validate_batch_is_legal(batch)
                except Exception:
                    if start == 0:  # refused before any job: bad input leaves no folder
                        (sweep_dir / MULTIRUN_FILE).unlink(missing_ok=True)
                        _remove_if_empty(sweep_dir)
                    raise
            results = self.launcher.launch(batch, initial_job_idx=start)
            for r in results:
                # Raises what a failed job raised, as BasicSweeper does, without Hydra's
                # "Error executing job with overrides" line: the job has said what failed.
                with contextlib.redirect_stderr(io.StringIO()):
                    _ = r.return_value
            returns.append(results)
        return returns


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
