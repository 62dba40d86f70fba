"""Signals that end a run early: SIGINT (Ctrl-C) and SIGTERM (SLURM, submitit, kill).

Torch-free, so the command line installs the same handling before any heavy import. A first
signal during training asks for a clean stop after the current epoch (:class:`StopOnSignal`);
a second one, or one outside training, raises :class:`Interrupted`, which the command line
turns into one line and exit 128 + signal.
"""

import signal
import threading


class Interrupted(BaseException):
    """Abort at once (a BaseException, like KeyboardInterrupt: no ``except Exception`` eats it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Installs the handlers (main thread only) for its ``with`` block and restores the old
    ones. The first signal sets ``received``, which the engine reads once an epoch and
    stops on, completing the record; a second one raises :class:`Interrupted` at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    @property
    def signal(self) -> str | None:
        """The signal's name, as a record's summary holds it (None: none received)."""
        return self.name or None

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise Interrupted(signum)
        self.received = signum


def raise_interrupted(signum, frame) -> None:
    """A signal handler for outside training: stop now, as Ctrl-C does."""
    raise Interrupted(signum)
