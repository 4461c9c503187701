"""Expand Canvas: the outpaint setup."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..core import canvas, model_free
from ..core import fill as filling
from ..core.errors import UncropError
from ..core.inputs import SEED_LIMIT, check_image
from . import host

SIZE_MODES = ("per side", "target size")


def geometry_inputs() -> list:
    """The canvas inputs shared by Expand Canvas and Outpaint, in saved-widget order."""
    side = "px (or % of the image, see unit) to add on the {} side; size mode 'per side' only."
    return [
        io.Combo.Input(
            "size_mode", options=list(SIZE_MODES), default="target size",
            tooltip="per side: add margins. target size: fit the image into width x height.",
        ),
        io.Int.Input("width", default=1024, min=8, max=canvas.MAX_SIDE, step=8,
                     tooltip="Target width in px (size mode 'target size')."),
        io.Int.Input("height", default=1024, min=8, max=canvas.MAX_SIDE, step=8,
                     tooltip="Target height in px (size mode 'target size')."),
        io.Combo.Input(
            "fit", options=list(canvas.FITS), default="pad",
            tooltip=(
                "pad: keep the whole image, scaled to fit, and generate the rest. "
                "crop: scale to cover and crop. stretch: resize exactly."
            ),
        ),
        io.Combo.Input(
            "anchor", options=list(canvas.ANCHORS), default="center",
            tooltip="Where the image sits on the new canvas (or which part is kept when cropping).",
        ),
        io.Int.Input("left", default=0, min=0, max=canvas.MAX_SIDE, tooltip=side.format("left")),
        io.Int.Input("top", default=0, min=0, max=canvas.MAX_SIDE, tooltip=side.format("top")),
        io.Int.Input("right", default=0, min=0, max=canvas.MAX_SIDE, tooltip=side.format("right")),
        io.Int.Input("bottom", default=0, min=0, max=canvas.MAX_SIDE, tooltip=side.format("bottom")),
        io.Combo.Input("unit", options=["px", "%"], default="px",
                       tooltip="Unit of the per-side margins: px, or % of the image width/height."),
        io.Int.Input(
            "multiple_of", default=8, min=1, max=256,
            tooltip="Round the canvas up to a multiple of this (8 for SD latents, 64 to be safe).",
        ),
    ]  # fmt: skip


def plan_canvas(image: torch.Tensor, **geometry) -> canvas.CanvasPlan:
    """The canvas plan that the :func:`geometry_inputs` values describe for this image."""
    h, w = image.shape[1:3]
    g = geometry
    if g["size_mode"] not in SIZE_MODES:  # a linked or API value skips the combo's check
        raise UncropError(
            f"size_mode: expected one of {', '.join(SIZE_MODES)}, got '{g['size_mode']}'."
        )
    if g["size_mode"] == "per side":
        return canvas.plan_margins(
            w, h, g["left"], g["top"], g["right"], g["bottom"], unit=g["unit"],
            multiple_of=g["multiple_of"],
        )  # fmt: skip
    return canvas.plan_target(
        w,
        h,
        g["width"],
        g["height"],
        fit=g["fit"],
        anchor=g["anchor"],
        multiple_of=g["multiple_of"],
    )


GEOMETRY = tuple(i.id for i in geometry_inputs())


def new_area_mask_output() -> io.Mask.Output:
    """The mask output of the nodes that grow the canvas (Expand Canvas, Outpaint)."""
    return io.Mask.Output(
        display_name="mask",
        tooltip="1 = the new area, plus the overlap band fading out, at the new size.",
    )


class ExpandCanvas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropExpandCanvas",
            display_name="Expand Canvas",
            category="Uncrop/canvas",
            **host.search_aliases(
                "outpaint",
                "uncrop",
                "extend canvas",
                "pad image",
                "zoom out",
                "enlarge canvas",
                "resize canvas",
            ),
            description=(
                "Grows the canvas for outpainting, per side or to a target size with a fit mode and "
                "anchor. Outputs the new image, with the new area pre-filled, and the mask of the "
                "area to generate (1 = new), optionally reaching into the image as a feathered band."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The image to extend."),
                *geometry_inputs(),
                io.Int.Input(
                    "overlap",
                    default=0,
                    min=0,
                    max=1024,
                    tooltip="Let the mask reach this many px into the image, fading out, to blend seams (from each grown side, at most as deep as its new strip is wide).",
                ),  # fmt: skip
                io.Combo.Input(
                    "fill",
                    options=list(filling.FILL_METHODS),
                    default="edge",
                    tooltip="How the new area starts out: context for a model, or the final result.",
                ),  # fmt: skip
                io.String.Input(
                    "color",
                    default=filling.DEFAULT_COLOR,
                    tooltip="Colour for fill 'color' (hex, #808080; #80808040 gives an RGBA image's fill that alpha).",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=SEED_LIMIT - 1,
                    tooltip="Seed for fills that use randomness (noise, patch).",
                    control_after_generate=False,  # a fill repeats unless asked
                ),
            ],
            outputs=[
                io.Image.Output(
                    display_name="image",
                    tooltip="The larger image, its new area pre-filled by the chosen fill.",
                ),
                new_area_mask_output(),
            ],
        )

    @classmethod
    def execute(
        cls, image, overlap: int, fill: str, color: str, seed: int, **geometry
    ) -> io.NodeOutput:
        image = check_image(image, values=False)  # the core checks the values
        plan = plan_canvas(image, **geometry)
        out, mask = model_free.outpaint(
            image,
            plan,
            fill,
            overlap=overlap,
            seed=seed,
            progress=host.Progress(),
            device=host.torch_device(),  # one image at a time: the batch stays where it is
            **filling.color_option(fill, color),
        )
        return io.NodeOutput(host.node_output(out), host.node_output(mask))
