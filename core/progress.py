"""Progress reporting and cancellation, as the engine sees them.

The engine never talks to ComfyUI or a terminal directly: long-running functions
take an optional :class:`ProgressHook` and call it between units of work. ComfyUI
(``nodes/host.py``) and the CLI provide their own implementations.
"""

from __future__ import annotations

from typing import Protocol

import torch


class ProgressHook(Protocol):
    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        """Report ``done`` of ``total`` units; ``preview`` is an optional IMAGE."""

    def check_interrupted(self) -> None:
        """Raise if the user asked to stop; called between units of work."""


class NullProgress:
    """A hook that reports nothing and never interrupts."""

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        return None

    def check_interrupted(self) -> None:
        return None


def or_null(hook: ProgressHook | None) -> ProgressHook:
    return hook if hook is not None else NullProgress()


class CancelOnly:
    """``hook``'s cancel button without its progress bar (for work inside a unit that
    the bar already counts, such as a sampler's pre-fill)."""

    def __init__(self, hook: ProgressHook | None) -> None:
        self.hook = or_null(hook)

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        return None

    def check_interrupted(self) -> None:
        self.hook.check_interrupted()


class Part:
    """Item ``index`` of ``count`` (an image of a batch) as a hook of its own: its
    ``done`` of ``total`` is reported as that share of the whole."""

    def __init__(self, hook: ProgressHook | None, index: int, count: int) -> None:
        self.hook, self.index, self.count = or_null(hook), index, count

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        self.hook.update(self.index * total + done, self.count * total, preview)

    def check_interrupted(self) -> None:
        self.hook.check_interrupted()
