"""ComfyUI adapters: one module per capability, assembled into one extension here."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import host
from .canvas import ExpandCanvas
from .caption import CaptionImage, LoadCaptioner
from .composite import Composite
from .fill import Fill
from .masks import LoadMask, RefineMask
from .sampling import Inpaint, LoadInpaintModel, Outpaint

NODES: list[type[io.ComfyNode]] = [LoadMask, RefineMask, ExpandCanvas, Fill, Composite]
NODES += [LoadCaptioner, CaptionImage]
NODES += [LoadInpaintModel, Inpaint, Outpaint]


class UncropExtension(ComfyExtension):
    async def on_load(self) -> None:
        host.log.debug("Uncrop: %d nodes", len(NODES))

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
