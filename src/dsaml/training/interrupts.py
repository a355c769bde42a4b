"""Ctrl-C during training stops at a step boundary: the step in progress finishes, a checkpoint is saved.

A step interrupted half-way could be applied twice after a resume, or leave the best score recorded without
its `best/` folder. So the first SIGINT only raises a flag that the loop reads after each complete step (all
processes agree on it in one tiny all-reduce, so they stop after the same step); a second SIGINT stops at
once, and the latest complete checkpoint (written to a temporary folder, then renamed) is where a rerun resumes.
"""

from __future__ import annotations

import signal
import sys
import threading

import torch


class StepBoundaryInterrupt:
    """`with StepBoundaryInterrupt() as interrupt: ... if interrupt.agreed(accelerator): save and stop`."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StepBoundaryInterrupt:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step, then saving a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def agreed(self, accelerator) -> bool:
        """True when any process was interrupted (the same answer on every process)."""
        if accelerator is None or accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
