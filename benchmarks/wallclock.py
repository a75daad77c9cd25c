"""Judging a training run at wall-clock checkpoints: the `on_validation` hook of hygie_lib.train.fit."""

from __future__ import annotations

from collections.abc import Callable, Iterable


class Enough(Exception):
    """Raised once the last checkpoint is judged: training need not go on."""


class AtMinutes:
    """Calls `judge(step, minutes)` at the first validation past each of `minutes` of training; after the last, raises
    Enough unless `to_the_end`."""

    def __init__(self, minutes: Iterable[float], judge: Callable[[int, float], None], to_the_end: bool = False) -> None:
        self.due, self.judge, self.to_the_end = sorted(minutes), judge, to_the_end

    def __call__(self, step: int, seconds: float) -> None:
        """fit's hook: `seconds` of training so far, after `step` steps."""
        if not self.due or seconds / 60 < self.due[0]:
            return
        self.due = [m for m in self.due if m > seconds / 60]
        self.judge(step, seconds / 60)
        if not self.due and not self.to_the_end:
            raise Enough
