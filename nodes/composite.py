"""Composite: paste a result back with untouched pixels kept exactly."""

from __future__ import annotations

from comfy_api.latest import io

from ..core import composite as compositing
from ..core.inputs import check_image, check_mask
from . import host


class Composite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropComposite",
            display_name="Composite",
            category="Uncrop/composite",
            **host.search_aliases(
                "paste back",
                "blend",
                "image composite masked",
                "color match",
                "colour match",
                "stitch",
            ),
            description=(
                "Pastes the generated image into the original through the mask: every pixel where "
                "the mask is 0 stays bit-identical, soft mask values blend. Optionally matches the "
                "generated area's colours to its surroundings first."
            ),
            inputs=[
                io.Image.Input("original", tooltip="The image whose unmasked pixels must be kept."),
                io.Image.Input("generated", tooltip="The filled or generated image, same size."),
                io.Mask.Input("mask", tooltip="1 = take the generated pixel; soft values blend."),
                io.Combo.Input(
                    "color_match",
                    options=list(compositing.COLOR_MATCH_MODES),
                    default="none",
                    tooltip=(
                        "Shift the generated area's colours towards the pixels around it: mean_std "
                        "matches mean and contrast in Lab, histogram matches the full distribution."
                    ),
                ),  # fmt: skip
            ],
            outputs=[
                io.Image.Output(
                    display_name="image",
                    tooltip="The original with the generated pixels pasted in where the mask is over 0.",
                )
            ],
        )

    @classmethod
    def execute(cls, original, generated, mask, color_match: str) -> io.NodeOutput:
        # color_match and composite check the values and match the inputs themselves, and
        # take one image at a time to the device: the batch stays where it is.
        device = host.torch_device()
        original = check_image(original, "original", values=False)
        generated = check_image(generated, "generated", values=False)
        mask = check_mask(mask, size=tuple(original.shape[1:3]))
        generated = compositing.color_match(
            generated, original, mask, color_match, progress=host.Progress(), device=device
        )
        out = compositing.composite(original, generated, mask, device=device)
        return io.NodeOutput(host.node_output(out))
