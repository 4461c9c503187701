"""The one exception users see for bad input."""


class UncropError(ValueError):
    """Input a user can fix.

    Raised at the boundary with a message that names the input, what was expected
    and what was received, so it reads well in ComfyUI's error dialog and the CLI.
    """
