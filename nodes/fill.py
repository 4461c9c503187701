"""Fill (model-free)."""

from __future__ import annotations

from comfy_api.latest import io

from ..core import fill as filling
from ..core import model_free, patchmatch
from ..core.inputs import SEED_LIMIT
from . import host


class Fill(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropFill",
            display_name="Fill (model-free)",
            category="Uncrop/fill",
            **host.search_aliases(
                "inpaint",
                "remove object",
                "content aware fill",
                "patchmatch",
                "erase",
                "fill hole",
                "heal",
                "mask fill",
            ),
            description=(
                "Fills the masked area without any model and blends it in along the mask's soft "
                "edge; pixels where the mask is 0 are returned bit-identical."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The image with an area to fill."),
                io.Mask.Input("mask", tooltip="1 = area to fill; soft values blend the fill in."),
                io.Combo.Input(
                    "method",
                    options=list(filling.FILL_METHODS),
                    default="smooth",
                    tooltip=(
                        "smooth: interpolate from the border (scratches, thin strokes, small holes). "
                        "patch: copy matching patches from the rest of the image (remove an object "
                        "from a textured background). pattern: continue a repeating texture (tiles, "
                        "brick, fabric) by whole periods, or patch when there is none. edge: nearest "
                        "border colour. mirror: reflect the surroundings. color: flat colour. "
                        "noise: coloured noise (a start for diffusion)."
                    ),
                ),  # fmt: skip
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=SEED_LIMIT - 1,
                    tooltip="Seed for methods that use randomness.",
                    control_after_generate=False,  # a fill repeats unless asked
                ),
                io.String.Input(
                    "color",
                    default=filling.DEFAULT_COLOR,
                    tooltip="Colour for method 'color' (hex, #808080; #80808040 gives an RGBA image's fill that alpha).",
                ),
                io.Int.Input(
                    "patch_size",
                    default=filling.DEFAULT_PATCH_SIZE,
                    min=3,
                    max=patchmatch.MAX_PATCH_SIZE,
                    step=2,
                    tooltip=(
                        "Side in pixels of the patches compared by 'patch' and 'pattern' (odd). "
                        "Larger follows bigger structures; smaller copies finer texture."
                    ),
                ),
                io.Mask.Input(
                    "source_mask",
                    optional=True,
                    tooltip=(
                        "Where 'patch' and 'pattern' may copy from (1 = allowed). Leave the object "
                        "you remove, or the other half of a diptych, at 0. Default: anywhere known. "
                        "The other methods ignore it."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output(
                    display_name="image",
                    tooltip="The image with its masked area filled; pixels where the mask is 0 unchanged.",
                )
            ],
        )

    @classmethod
    def execute(
        cls,
        image,
        mask,
        method: str,
        seed: int,
        color: str,
        patch_size: int = filling.DEFAULT_PATCH_SIZE,
        source_mask=None,
    ) -> io.NodeOutput:
        # model_free.inpaint and fill() check and match image, mask and (for the methods
        # that copy) source_mask, and move each image to the device as it is filled.
        out = model_free.inpaint(
            image,
            mask,
            method,
            seed=seed,
            patch_size=patch_size,
            source_mask=source_mask,
            progress=host.Progress(),
            device=host.torch_device(),  # one image at a time: the batch stays where it is
            **filling.color_option(method, color),
        )
        return io.NodeOutput(host.node_output(out))
