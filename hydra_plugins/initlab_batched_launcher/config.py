"""The settings of ``hydra/launcher=batched`` and ``hydra/sweeper=initlab``, and their ConfigStore entries."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.initlab_batched_launcher.batched_launcher.BatchedLauncher"
    # At most this many jobs train as one stacked model; a bigger group runs in chunks,
    # and each chunk's records are complete as soon as it ends.
    max_members: int = 4096
    # cpu | cuda | auto for every group; null: each job's trainer.device.
    device: Optional[str] = None
    # CPU threads of the stacked model; null: one per core available to this process.
    # (A job's trainer.threads, default 1, is for a single small net, which threads slow.)
    threads: Optional[int] = None
    # always: every job keeps a folder of its own (its record, .hydra/, its page); never:
    # each group writes one columnar record under <sweep>/groups/ instead, and
    # `initlab report <sweep> --job N` writes a job's folder on demand; auto: folders for a
    # sweep of at most max_job_folders jobs.
    job_folders: str = "auto"
    max_job_folders: int = 2000
    # null: every chunk trains in this process; submitit_slurm (or submitit_local, on this
    # machine): each chunk is one submitit task, with `submitit`'s parameters
    # (timeout_min, slurm_partition, gpus_per_node, cpus_per_task, mem_gb,
    # slurm_array_parallelism, ...: submitit.AutoExecutor.update_parameters).
    executor: Optional[str] = None
    submitit: dict[str, Any] = field(default_factory=lambda: {"timeout_min": 60, "cpus_per_task": 1})


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf,
                             provider="initlab")


@dataclass
class InitlabSweeperConf:
    _target_: str = "hydra_plugins.initlab_batched_launcher.sweeper.InitlabSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="initlab", node=InitlabSweeperConf,
                             provider="initlab")
