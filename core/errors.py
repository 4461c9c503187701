"""The exceptions users see: bad input, and out of memory after every fallback."""

import torch


class UncropError(ValueError):
    """Input a user can fix.

    Raised at the boundary with a message that names the input, what was expected
    and what was received, so it reads well in ComfyUI's error dialog and the CLI.
    """


class OutOfMemory(UncropError, torch.cuda.OutOfMemoryError):
    """Out of memory even after the engine's own fallback, with advice.

    It is torch's out-of-memory error as well, so a host that frees memory on one
    does so (ComfyUI unloads its models), and an :class:`UncropError`, so the CLI
    prints its message.
    """
