"""Test stand-in for comfy_api.latest (see ../../README.md)."""

from . import _io as io
from . import _ui as ui


class ComfyExtension:
    async def on_load(self) -> None:
        return None

    async def get_node_list(self):
        raise NotImplementedError


IO = io
UI = ui
__all__ = ["ComfyExtension", "io", "IO", "ui", "UI"]
