"""A CPU group trained in one forked process per core: the parent and forked copies each
train a contiguous slice of the members as its own stacked model and write their records.

Why: the training loop is one Python thread issuing small tensor ops, which a second torch
thread speeds up little; measured on 2 cores, 200 textbook members for 2000 epochs: 8.6-9.1 s
in one process with 2 threads, 6.5-6.9 s in two processes of 100 members with 1 (and the
records are written two at a time). The shards ignore SIGINT/SIGTERM and take their stop
from the parent through an mmap: one Ctrl-C stops each shard after its epoch, a second one
aborts; a shard whose parent is killed completes its records as interrupted.
"""

import contextlib
import mmap
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable

import torch

from initlab.interrupts import Interrupted, StopOnSignal
from initlab.job import library_versions

# How often the parent reports progress while it waits for the other shards (seconds).
PROGRESS_EVERY_S = 0.2
# The shared words' slots (_shared_words).
STOP, ABORTED, EPOCHS = 0, 1, 2


class ShardError(RuntimeError):
    """A forked shard failed: the jobs whose records it had not finished fail, in one line."""


class _ParentStop:
    """A shard's stop signal, set by the process that forked it (:class:`_SharedStop`): the
    shard ignores SIGINT/SIGTERM itself, so a Ctrl-C, which reaches every process of the
    terminal's group, counts once. When that process is gone (killed), the shard stops as
    if signalled and completes its records. Read once an epoch by the fit, ``received``
    raises :class:`Interrupted` once the parent has aborted (its second signal)."""

    def __init__(self, control: memoryview, parent: int):
        self.control, self.parent = control, parent
        self.parent_gone = False

    @property
    def received(self) -> int | None:
        if self.control[ABORTED]:
            raise Interrupted(self.control[STOP] or signal.SIGTERM)
        if self.control[STOP]:
            return self.control[STOP]
        if not self.parent_gone and os.getppid() != self.parent:
            self.parent_gone = True
        return -1 if self.parent_gone else None

    @property
    def name(self) -> str:
        stop = self.control[STOP]
        return signal.Signals(stop).name if stop else "the end of its launcher process"

    @property
    def signal(self) -> str | None:
        return signal.Signals(self.control[STOP]).name if self.control[STOP] else None


def _shared_words(shards: int) -> memoryview:
    """Words shared by a sharded group's processes (an anonymous mmap, shared after fork):
    [STOP] the stop signal, [ABORTED] the abort flag, [EPOCHS + k] shard k's epochs done."""
    return memoryview(mmap.mmap(-1, 8 * (EPOCHS + shards))).cast("q")


class _SharedStop(StopOnSignal):
    """This process's StopOnSignal, which also tells the shards (:class:`_ParentStop`)."""

    def __init__(self, control: memoryview):
        super().__init__()
        self.control = control

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.control[STOP] = signum
        else:
            self.control[ABORTED] = 1
        super()._handle(signum, frame)


class Shards:
    """A CPU group trained in ``shards`` processes (the module doc): this one and forked
    copies, each training a contiguous slice of the members with ``threads // shards``
    torch threads.

    Each shard sends a summary back through its pipe as soon as the record is complete;
    they are reported in member order. A shard that fails, this one included, fails the
    jobs whose records it had not finished, after the others finished theirs
    (:class:`ShardError` for a forked one, in one line); one signal stops every shard
    after its epoch, a second aborts them at once.
    """

    def __init__(self, members: list, shards: int, threads: int, progress: Callable | None,
                 on_member_done: Callable[[int, dict], None] | None, train: Callable,
                 launcher: str | None):
        self.members, self.progress, self.on_member_done = members, progress, on_member_done
        self.train_shard, self.launcher = train, launcher
        self.bounds = [round(k * len(members) / shards) for k in range(shards + 1)]
        self.threads = max(1, threads // shards)
        self.control = _shared_words(shards)
        self.children: list[int] = []
        self.exit_codes: dict[int, str] = {}
        self.read_fds: list[int] = []
        self.inbox: queue.Queue = queue.Queue()
        self.readers: list[threading.Thread] = []
        self.epochs = members[0][0].trainer.epochs

    def __enter__(self) -> "Shards":
        self.previous_threads = torch.get_num_threads()
        self.stop = _SharedStop(self.control).__enter__()
        torch.set_num_threads(self.threads)
        self.versions = library_versions()
        parent = os.getpid()
        try:
            for shard in range(1, len(self.bounds) - 1):
                self._fork(shard, parent)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _fork(self, shard: int, parent: int) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # No signal between the fork and the shard's own handling (it ignores them), nor
        # between the fork and this process knowing the shard's pid.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, StopOnSignal.SIGNALS)
        pid = -1
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns of fork() beside threads (a progress bar's); the
                # shard takes no lock they hold: it trains, writes files, then _exits.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the shard: never returns
                code = 1
                try:
                    for signum in StopOnSignal.SIGNALS:  # its stop comes from the parent
                        signal.signal(signum, signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                    # The other shards' pipes are this process's to read: a copy held
                    # here would keep a killed launcher's pipes open.
                    for fd in [read_fd, *self.read_fds]:
                        os.close(fd)
                    with os.fdopen(write_fd, "wb") as out:
                        code = self._shard_main(shard, parent, out)
                finally:
                    os._exit(code)
            self.children.append(pid)
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(write_fd)
        self.read_fds.append(read_fd)
        reader = threading.Thread(target=self._read, args=(shard, os.fdopen(read_fd, "rb")),
                                  name=f"shard-{shard}-pipe", daemon=True)
        reader.start()
        self.readers.append(reader)

    def _shard_main(self, shard: int, parent: int, out) -> int:
        """A forked shard's work; its exit code."""
        first, end = self.bounds[shard], self.bounds[shard + 1]
        stop = _ParentStop(self.control, parent)
        sending = True

        def epoch_done(epochs: int, *_) -> None:
            self.control[EPOCHS + shard] = epochs

        def done(i: int, summary: dict) -> None:
            nonlocal sending
            if self.control[ABORTED]:
                raise Interrupted(self.control[STOP] or signal.SIGTERM)
            if sending:
                try:
                    pickle.dump((first + i, summary), out)
                    out.flush()
                except OSError:  # the parent is gone: its records are still worth finishing
                    sending = False

        try:
            self.train_shard(self.members[first:end], torch.device("cpu"), stop,
                             epoch_done, done, self.versions, self.launcher)
        except Interrupted:
            return 1
        except BaseException:  # noqa: BLE001 - said to the parent, in its words
            if sending:
                with contextlib.suppress(OSError):
                    pickle.dump((-shard, traceback.format_exc()), out)
            return 1
        return 0

    def _read(self, shard: int, pipe) -> None:
        try:
            while True:
                self.inbox.put(pickle.load(pipe))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self.inbox.put((None, shard))
        finally:
            pipe.close()

    def _report_progress(self, own: int, total: int, *_) -> None:
        if self.progress is not None:
            self.progress(min([own] + [self.control[EPOCHS + k]
                                       for k in range(1, len(self.bounds) - 1)]), total, None)

    def train(self) -> list[dict]:
        summaries: dict[int, dict] = {}

        def done(i: int, summary: dict) -> None:
            summaries[i] = summary
            if self.on_member_done is not None:
                self.on_member_done(i, summary)

        own_failure: Exception | None = None
        try:
            self.train_shard(self.members[:self.bounds[1]], torch.device("cpu"), self.stop,
                             self._report_progress, done, self.versions, self.launcher)
        except Exception as e:  # noqa: BLE001 - the other shards' records still complete first
            own_failure = e
        received: dict[int, dict] = {}
        errors: dict[int, str] = {}  # shard -> the last line of its traceback
        ended: set[int] = set()
        failures: dict[int, str] = {}  # shard -> why its first unfinished job failed
        for i in range(self.bounds[1], len(self.members)):
            shard = next(k for k in range(1, len(self.bounds) - 1) if i < self.bounds[k + 1])
            while i not in received and shard not in ended:
                try:
                    key, value = self.inbox.get(timeout=PROGRESS_EVERY_S)
                except queue.Empty:
                    self._report_progress(self.epochs, self.epochs)
                    continue
                if key is None:
                    ended.add(value)
                elif key < 0:
                    errors[-key] = str(value).strip().splitlines()[-1]
                else:
                    received[key] = value
            if i in received:
                done(i, received.pop(i))
            elif shard not in failures:
                failures[shard] = (f"the process training jobs {self.bounds[shard]}-"
                                   f"{self.bounds[shard + 1] - 1} failed before job {i}'s record: "
                                   + (errors.get(shard) or f"it ended (exit {self._exit_code(shard)})"))
        # The bar's last frame: every shard's count as it ended (the last report was taken
        # while another shard was still behind).
        self._report_progress(self.epochs, self.epochs)
        if own_failure is not None:
            raise own_failure
        if failures:
            raise ShardError("; ".join(failures[k] for k in sorted(failures)))
        return [summaries[i] for i in range(len(self.members))]

    def _exit_code(self, shard: int) -> str:
        """The shard's exit status (it has ended: its pipe is closed)."""
        if shard not in self.exit_codes:
            pid, self.children[shard - 1] = self.children[shard - 1], 0
            try:
                _, status = os.waitpid(pid, 0)
                self.exit_codes[shard] = str(os.waitstatus_to_exitcode(status))
            except ChildProcessError:
                self.exit_codes[shard] = "unknown"
        return self.exit_codes[shard]

    def __exit__(self, *exc) -> bool:
        try:
            if exc[0] is not None:  # an error or a second signal here: the shards stop at once
                self.control[ABORTED] = 1
            for k, pid in enumerate(self.children):
                if pid:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    self.children[k] = 0
            for reader in self.readers:
                reader.join()
        finally:
            self.stop.__exit__(*exc)
            torch.set_num_threads(self.previous_threads)
        return False


