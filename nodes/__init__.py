"""ComfyUI adapters: one module per capability, assembled into one extension here."""

from __future__ import annotations

from pathlib import Path

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

# The photo and mask the example workflows load.
SAMPLES = [Path(__file__).resolve().parent.parent / "samples" / name for name in (
    "uncrop-coffee.jpg", "uncrop-coffee-mask.png"
)]  # fmt: skip


def provide_samples() -> None:
    """Copy the samples into the input folder where no file of their name is, so that a
    workflow dropped into the editor runs as it is."""
    host.provide_input_files(SAMPLES)


class UncropExtension(ComfyExtension):
    async def on_load(self) -> None:
        host.log.debug("Uncrop: %d nodes", len(NODES))

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
