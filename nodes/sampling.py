"""Load Inpaint Model, Inpaint and Outpaint: diffusion sampling in the pack's own sampler."""

from __future__ import annotations

import logging
import os

import torch
from comfy_api.latest import io, ui

from ..core import fill as filling
from ..core import models, sampling
from ..core.composite import COLOR_MATCH_MODES
from ..core.errors import UncropError
from ..core.inputs import SEED_LIMIT, check_image
from . import host
from .canvas import GEOMETRY, geometry_inputs, new_area_mask_output, plan_canvas
from .caption import CAPTIONER

log = logging.getLogger("uncrop")

InpaintModelType = io.Custom("UNCROP_INPAINT_MODEL")
NO_CONTROLNET = "none"
NONE_FOUND = "(no model found)"

host.register_model_folder("diffusers", set())
host.register_model_folder("controlnet", {".safetensors"})


def model_choices() -> list[str]:
    """Diffusers folders (``diffusers``) and single ``.safetensors`` files (``checkpoints``)."""
    folders = host.list_model_dirs("diffusers")
    files = [f for f in host.list_model_files("checkpoints") if f.endswith(".safetensors")]
    return folders + files


def controlnet_choices() -> list[str]:
    """Diffusers ControlNet folders and single ``.safetensors`` files in ``controlnet``
    (files inside a diffusers folder are that folder's, not choices of their own)."""
    folders = [
        d
        for d in host.list_model_dirs("controlnet")
        if os.path.isfile(os.path.join(host.model_path("controlnet", d) or "", "config.json"))
    ]
    inside = tuple(d + "/" for d in folders)
    files = [
        f
        for f in host.list_model_files("controlnet")
        if f.lower().endswith(".safetensors") and not f.replace("\\", "/").startswith(inside)
    ]
    return folders + files


def resolve_model(name: str) -> str:
    path = None
    if name != NONE_FOUND:
        path = host.model_path("diffusers", name) or host.model_path("checkpoints", name)
    if path is None:
        folders = ", ".join(host.model_folders("diffusers") + host.model_folders("checkpoints"))
        what = "no model is installed" if name == NONE_FOUND else f"'{name}' is not there"
        raise UncropError(
            f"model: {what}. Put a diffusers folder (with model_index.json) in models/diffusers "
            f"or a .safetensors checkpoint in models/checkpoints ({folders}), then press R in "
            "ComfyUI to refresh the list."
        )
    return path


def _sampler_inputs() -> list:
    """The sampling widgets shared by Inpaint and Outpaint."""
    return [
        InpaintModelType.Input("model", tooltip="From Load Inpaint Model."),
        io.String.Input(
            "prompt",
            multiline=True,
            default="",
            tooltip="What to paint. Empty: the captioner's description, or no prompt at all.",
        ),
        io.String.Input("negative_prompt", multiline=True, default="", tooltip="What to avoid."),
        io.Int.Input(
            "seed",
            default=0,
            min=0,
            max=SEED_LIMIT - 1,
            control_after_generate=True,
            tooltip=(
                "Same seed, same settings, same device: same pixels. Image i of a batch "
                "uses seed + 1000*i, so it can be repeated alone with that seed."
            ),
        ),
        io.Int.Input("steps", default=20, min=1, max=200, tooltip="Denoising steps."),
        io.Float.Input(
            "guidance",
            default=7.0,
            min=0.0,
            max=30.0,
            step=0.1,
            tooltip="Classifier-free guidance scale; 1 or less turns guidance off.",
        ),
        io.Float.Input(
            "strength",
            default=1.0,
            min=0.01,
            max=1.0,
            step=0.01,
            tooltip="Denoise: 1 repaints the hole from noise; lower keeps more of the pre-fill.",
        ),
        io.Combo.Input(
            "scheduler",
            options=list(sampling.SCHEDULERS),
            default="euler",
            tooltip="Sampler: " + ", ".join(sampling.SCHEDULERS) + ".",
        ),
        io.Float.Input(
            "mask_blur",
            default=4.0,
            min=0.0,
            max=256.0,
            step=0.5,
            tooltip=(
                "Feather of the seam, px, inside the mask (a thinner hole still takes all of "
                "the generated image at its middle); pixels outside it never change."
            ),
        ),
        io.Combo.Input(
            "prefill",
            options=["none", *filling.FILL_METHODS],
            default=sampling.SamplerSettings.prefill,
            tooltip="Model-free fill of the hole before sampling (context, and the start for strength < 1).",
        ),
        io.Float.Input(
            "context",
            default=0.5,
            min=0.0,
            max=4.0,
            step=0.05,
            tooltip="Context around the mask's box, as a fraction of its longer side.",
        ),
        io.Int.Input(
            "resolution",
            default=0,
            min=0,
            max=4096,
            step=64,
            tooltip="Side in px each window is sampled at; 0 = the model's native size.",
        ),
        io.Combo.Input(
            "color_match",
            options=list(COLOR_MATCH_MODES),
            default="none",
            tooltip="Match the generated area's colours to its surroundings.",
        ),
        io.Float.Input(
            "controlnet_scale",
            default=1.0,
            min=0.0,
            max=2.0,
            step=0.05,
            tooltip="controlnet_conditioning_scale, when the model has an inpaint ControlNet.",
        ),
        CAPTIONER.Input(
            "captioner",
            optional=True,
            tooltip="Writes the prompt when the prompt is empty (from Load Captioner).",
        ),
    ]


def _settings(kw: dict) -> sampling.SamplerSettings:
    """The sampler widgets as settings; a widget with no setting is a bug, not ignored."""
    unknown = set(kw) - set(sampling.SamplerSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"sampler inputs without a SamplerSettings field: {sorted(unknown)}")
    return sampling.SamplerSettings(**kw)


def _prepare(model: models.InpaintModel) -> torch.device:
    return host.load_to_device(model.modules(), model.extra)


PROMPT_USED_TOOLTIP = (
    "The prompt each image was painted with (the captioner's when the prompt was empty). "
    "It is also put in the metadata of the PNGs that SaveImage nodes write after this node "
    "samples, in the same run; a result taken from ComfyUI's cache adds none, so wire this "
    "output to keep it for sure."
)


def _output(
    node: type[io.ComfyNode], image: torch.Tensor, prompts: list[str], *extra
) -> io.NodeOutput:
    """Outputs plus the prompt used: shown on the node, and put in ComfyUI's
    ``extra_pnginfo``, which SaveImage writes into the PNG's metadata."""
    text = sampling.prompt_summary(prompts)
    pnginfo = getattr(node.hidden, "extra_pnginfo", None) if node.hidden is not None else None
    if isinstance(pnginfo, dict):
        pnginfo[sampling.PROMPT_METADATA_KEY] = text
    host.show_text(node, text)
    outputs = (host.node_output(t) for t in (image, *extra))
    return io.NodeOutput(*outputs, text, ui=ui.PreviewText(text))


class LoadInpaintModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        choices = model_choices() or [NONE_FOUND]
        return io.Schema(
            node_id="UncropLoadInpaintModel",
            display_name="Load Inpaint Model",
            category="Uncrop/diffusion",
            **host.search_aliases(
                "inpainting checkpoint",
                "inpaint model loader",
                "diffusers loader",
                "controlnet inpaint",
                "sdxl inpaint",
                "sd inpaint",
            ),
            description=(
                "Loads an SD 1.x/2.x or SDXL model, inpainting or ordinary, from a diffusers folder "
                "(models/diffusers) or a single .safetensors file (models/checkpoints), offline, and "
                "says which family it found. Pickle files (.ckpt) are refused."
            ),
            hidden=[io.Hidden.unique_id],
            inputs=[
                io.Combo.Input(
                    "model", options=choices, default=choices[0], tooltip="Model to load."
                ),
                io.Combo.Input(
                    "controlnet",
                    options=[NO_CONTROLNET, *controlnet_choices()],
                    default=NO_CONTROLNET,
                    tooltip=(
                        "Optional inpaint ControlNet from models/controlnet (a .safetensors file "
                        "or a diffusers folder), made for the same family as the model."
                    ),
                ),
                io.Combo.Input(
                    "dtype",
                    options=["auto", "fp16", "bf16", "fp32"],
                    default="auto",
                    tooltip="auto: bf16 or fp16 on a GPU, fp32 on the CPU.",
                ),
                io.Boolean.Input(
                    "vae_tiling",
                    default=False,
                    tooltip="Decode in tiles to save memory (also switched on by itself after running out of memory).",
                ),
            ],
            outputs=[
                InpaintModelType.Output(
                    display_name="model",
                    tooltip="Connect to Inpaint or Outpaint.",
                ),
                io.String.Output(
                    display_name="info",
                    tooltip="What was loaded: model family and base, native size, dtype, ControlNet.",
                ),
            ],
        )

    @staticmethod
    def _paths(model: str, controlnet: str) -> tuple[str, str | None]:
        path = resolve_model(model)
        if controlnet == NO_CONTROLNET:
            return path, None
        cn = host.model_path("controlnet", controlnet)
        if cn is None:
            raise UncropError(f"controlnet: '{controlnet}' is not in models/controlnet.")
        return path, cn

    @classmethod
    def fingerprint_inputs(
        cls, model: str | None, controlnet: str | None, dtype, vae_tiling
    ) -> str:
        """The files' dates and sizes: replaced weights under the same name load again.
        A linked name comes as None: the link is in ComfyUI's cache key already."""
        if model is None or controlnet is None:
            return "linked"
        try:
            path, cn = cls._paths(model, controlnet)
        except UncropError:
            return f"{model}|{controlnet}"  # execute says what is missing
        return repr((models.file_stamp(path), models.file_stamp(cn)))

    @classmethod
    def execute(cls, model: str, controlnet: str, dtype: str, vae_tiling: bool) -> io.NodeOutput:
        path, cn = cls._paths(model, controlnet)
        loaded = models.load_model(
            path,
            controlnet=cn,
            dtype=host.model_dtype(dtype, host.torch_device()),
            vae_tiling=vae_tiling,
            tokenizer_dir=host.clip_tokenizer_dir(),
        )
        info = loaded.describe()
        log.info("Uncrop: %s", info)
        host.show_text(cls, info)
        return io.NodeOutput(loaded, info, ui=ui.PreviewText(info))


class Inpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropInpaint",
            display_name="Inpaint",
            category="Uncrop/diffusion",
            **host.search_aliases(
                "inpainting",
                "remove object",
                "fill masked area",
                "diffusion inpaint",
                "crop and stitch",
            ),
            description=(
                "Fills the masked area with a diffusion model. Only the mask's box plus context is "
                "sampled (a window for each group of holes far apart), at the model's native "
                "size (or resolution), then pasted back: pixels "
                "where the mask is 0 stay bit-identical and the seam is feathered inside the mask."
            ),
            hidden=[io.Hidden.extra_pnginfo, io.Hidden.unique_id],
            inputs=[
                io.Image.Input("image", tooltip="The image to inpaint."),
                io.Mask.Input("mask", tooltip="1 = area to fill."),
                *_sampler_inputs(),
            ],
            outputs=[
                io.Image.Output(
                    display_name="image",
                    tooltip="The inpainted image; pixels where the mask is 0 are the input's, bit for bit.",
                ),
                io.String.Output(display_name="prompt_used", tooltip=PROMPT_USED_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, image, mask, model, captioner=None, **kw) -> io.NodeOutput:
        image = check_image(image, values=False)  # the sampler checks what it reads
        settings = _settings(kw)
        result = sampling.inpaint(
            model,
            image,
            mask,
            settings,
            captioner=captioner,
            prepare_model=lambda: _prepare(model),
            progress=host.Progress(),
            preview=host.latent_previewer(model.info.base),
        )
        return _output(cls, result.image, result.prompts)


class Outpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropOutpaint",
            display_name="Outpaint",
            category="Uncrop/diffusion",
            **host.search_aliases(
                "uncrop",
                "outpainting",
                "extend image",
                "zoom out",
                "expand image",
                "generative expand",
            ),
            description=(
                "Extends the image with a diffusion model, per side or to a target size with a fit "
                "mode and anchor (the Expand Canvas geometry). A large new area is covered by "
                "overlapping windows of the model's native size (or resolution) that each see "
                "real context."
            ),
            hidden=[io.Hidden.extra_pnginfo, io.Hidden.unique_id],
            inputs=[
                io.Image.Input("image", tooltip="The image to extend."),
                *geometry_inputs(),
                io.Int.Input(
                    "overlap",
                    default=sampling.OUTPAINT_OVERLAP,
                    min=0,
                    max=1024,
                    tooltip="Let the generated area reach this many px into the image, fading out (from each grown side, at most as deep as its new strip is wide).",
                ),
                *_sampler_inputs(),
            ],
            outputs=[
                io.Image.Output(
                    display_name="image",
                    tooltip="The extended image; the original's pixels outside the overlap band unchanged.",
                ),
                new_area_mask_output(),
                io.String.Output(display_name="prompt_used", tooltip=PROMPT_USED_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, image, model, overlap: int, captioner=None, **kw) -> io.NodeOutput:
        image = check_image(image, values=False)  # the sampler checks the values
        plan = plan_canvas(image, **{k: kw.pop(k) for k in GEOMETRY})
        settings = _settings(kw)
        result, mask = sampling.outpaint(
            model,
            image,
            plan,
            settings,
            overlap=overlap,
            captioner=captioner,
            prepare_model=lambda: _prepare(model),
            progress=host.Progress(),
            preview=host.latent_previewer(model.info.base),
        )
        return _output(cls, result.image, result.prompts, mask)
