"""A job of a group record (:mod:`initlab.group_record`) given its folder on demand:
``initlab report SWEEP --job N`` (or ``initlab report SWEEP/N``).

The group record keeps a job's summary, metrics and gradient norms at log steps, not every
table of its folder. The folder is made the way it would have been: the job trains again,
alone, from its recorded config into ``SWEEP/N``, with the ``.hydra/`` files its row holds.
A member of a stack is the same job alone, byte for byte (tests/test_engine.py), so this is
the record the sweep would have written; the final metrics are checked against the row's
and any difference is said (another torch, another machine).
"""

import math
import os
import shutil
from pathlib import Path

from initlab.group_record import job_numbers, read_job_summary
from initlab.record import STATUS_COMPLETED, STATUS_DIVERGED, SUMMARY, RecordError


def job_folder(sweep_dir: Path, job: int, quiet: bool = False) -> Path:
    """``SWEEP/<job>``, trained again from its group record when it has no folder yet."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / str(job)
    if (out / SUMMARY).exists():
        return out
    found = read_job_summary(sweep_dir, job)
    if found is None:
        numbers = job_numbers(sweep_dir)
        known = f"jobs {numbers[0]}–{numbers[-1]}" if numbers else "no jobs"
        raise RecordError(f"job {job} is not in the group records of {sweep_dir} ({known})")
    group, overrides, summary = found
    status = summary.get("status")
    if status not in (STATUS_COMPLETED, STATUS_DIVERGED):
        why = summary.get("error") or summary.get("stop_reason") or ""
        raise RecordError(f"job {job} of {sweep_dir} is {status}{': ' + why if why else ''}; "
                          "only a job that ran to its end is trained again for its folder")
    # Trained into a folder of its own first: a killed `--job N` leaves no half folder.
    partial = sweep_dir / f".{job}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    _train_again(job, group, overrides, summary, partial, quiet)
    if out.exists():  # a folder without a summary: nothing of the record
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


def _train_again(job: int, group: Path, overrides: list[str], recorded: dict, out: Path,
                 quiet: bool) -> None:
    import torch

    from initlab.engine import train_group
    from initlab.view import config_view

    for name, text in recorded["hydra_files"].items():  # ".hydra/config.yaml": its text
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    device = str(recorded.get("device") or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    if not quiet:
        print(f"job {job}: writing its folder {out.parent / str(job)} (trained again, alone, "
              f"from its group record {group})", flush=True)
    [summary] = train_group([config_view(recorded["config"])], [out], device=device,
                            overrides=[overrides], launcher=recorded.get("launcher"))
    differs = _differences(recorded, summary)
    if differs:
        # A stack and a job alone can round a float32 operation differently in its last
        # bit at some data sizes (an elementwise kernel's vectorized body and scalar tail).
        print(f"initlab: warning: job {job} trained again differs from its group record "
              f"({differs})", flush=True)


def _differences(recorded: dict, again: dict) -> str:
    out = []
    if recorded.get("status") != again.get("status"):
        out.append(f"status {recorded.get('status')} vs {again.get('status')}")
    for split, values in (recorded.get("metrics") or {}).items():
        for key, value in values.items():
            new = ((again.get("metrics") or {}).get(split) or {}).get(key)
            if not (value == new or (isinstance(value, float) and isinstance(new, float)
                                     and math.isnan(value) and math.isnan(new))):
                out.append(f"{split} {key} {value} vs {new}")
    return "; ".join(out[:3])


def job_number(path: Path) -> tuple[Path, int] | None:
    """(sweep, job) for ``SWEEP/N`` when it is a job of a group record without its folder."""
    path = Path(path)
    if path.name.isdigit() and not (path / SUMMARY).exists():
        from initlab.group_record import has_group_records

        if has_group_records(path.parent):
            return path.parent, int(path.name)
    return None

