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
