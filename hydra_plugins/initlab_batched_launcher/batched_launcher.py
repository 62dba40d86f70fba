"""The Launcher Hydra instantiates for ``hydra/launcher=batched`` (the work is in ``_core``)."""

from collections.abc import Sequence
from typing import Optional

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class BatchedLauncher(Launcher):
    """Compose a sweep's jobs cheaply, group those of one shape and train each group as one
    stacked model (``initlab.engine.train_group``); each job gets its own folder, or, in a big
    sweep (``job_folders``), its rows in its group's columnar record."""

    # Every job is composed and checked here before any starts, and one that does not
    # compose fails alone: hydra/sweeper=initlab skips its own composition of every job.
    composes_each_job = True

    def __init__(self, max_members: int = 4096, device: Optional[str] = None,
                 threads: Optional[int] = None, job_folders: str = "auto",
                 max_job_folders: int = 2000, executor: Optional[str] = None,
                 submitit: Optional[dict] = None) -> None:
        self.max_members = max_members
        self.job_folders, self.max_job_folders = job_folders, max_job_folders
        from omegaconf import DictConfig, OmegaConf

        # Plain values for submitit (a nested DictConfig is not what it takes).
        self.executor = executor
        self.submitit = (OmegaConf.to_container(submitit, resolve=True)
                         if isinstance(submitit, DictConfig) else dict(submitit or {}))
        self.device = device
        self.threads = threads
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra_plugins.initlab_batched_launcher._compose import Composer
        from hydra_plugins.initlab_batched_launcher._core import check_settings

        # Before any folder is made.
        self.device, self.threads = check_settings(self.max_members, self.device, self.threads,
                                                   self.job_folders, self.max_job_folders,
                                                   self.executor, self.submitit)
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context
        loader = hydra_context.config_loader
        self.composer = Composer(loader, config, set(loader.list_groups("")))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.initlab_batched_launcher import _core

        return _core.launch(self, job_overrides, initial_job_idx)
