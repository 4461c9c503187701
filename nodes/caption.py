"""Load Captioner and Caption Image."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..core import caption as captioning
from ..core.errors import UncropError
from ..core.models import file_stamp
from . import host

CAPTIONER = io.Custom("UNCROP_CAPTIONER")
NONE_FOUND = "(no captioner found)"

host.register_model_folder(captioning.MODEL_FOLDER)


def _option_inputs() -> list:
    """The captioning options, shared by both nodes (the loader's are the defaults)."""
    defaults = captioning.CaptionOptions()
    return [
        io.Combo.Input(
            "region",
            options=list(captioning.REGIONS),
            default=defaults.region,
            tooltip=(
                "visible: describe only what the mask leaves visible (the hole is cropped away or "
                "blurred out, so it is never described). whole: describe the whole image."
            ),
        ),
        io.Int.Input(
            "max_length",
            default=defaults.max_length,
            min=1,
            max=512,
            tooltip="Most tokens (about words) the caption may have.",
        ),
        io.Int.Input(
            "beams",
            default=defaults.beams,
            min=1,
            max=16,
            tooltip="Beam-search width: more beams give more careful captions, slower. 1 = greedy.",
        ),
        io.String.Input(
            "template",
            default=defaults.template,
            tooltip=(
                "The prompt written; {caption} is replaced by the caption, e.g. '{caption}, "
                "detailed photo'. Written on one line (line breaks become spaces): a batch's "
                "text has a line per image."
            ),
        ),
        io.String.Input(
            "prefix",
            default=defaults.prefix,
            tooltip="Optional start the caption must continue, e.g. 'a photography of' (conditional captioning).",
        ),
    ]


def _options(
    region: str, max_length: int, beams: int, template: str, prefix: str
) -> captioning.CaptionOptions:
    return captioning.CaptionOptions(
        region=region, max_length=max_length, beams=beams, template=template, prefix=prefix
    ).checked()


class ComfyPlacement:
    """Loads a captioner through ComfyUI's memory management (see ``host.load_to_device``).

    The model goes in a plain ``ModuleDict``: ComfyUI's ModelPatcher sets a
    ``device`` attribute on what it manages, which transformers models refuse.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.holder = model, {}
        self.modules = torch.nn.ModuleDict({"captioner": model})

    def activate(self) -> torch.device:
        return host.load_to_device(self.modules, self.holder)

    def release(self) -> None:
        self.holder.clear()
        self.model.to(host.offload_device())


def find_captioner(model: str) -> str:
    """Full path of the sub-folder ``model`` of the captioners model folders."""
    path = host.model_path(captioning.MODEL_FOLDER, model) if model != NONE_FOUND else None
    if path is None:
        folders = " or ".join(f"'{f}'" for f in host.model_folders(captioning.MODEL_FOLDER))
        what = (
            "No captioner is installed" if model == NONE_FOUND else f"Captioner '{model}' not found"
        )
        raise UncropError(f"{what}. {captioning.folder_help(folders)}")
    return path


class LoadCaptioner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        models = host.list_model_dirs(captioning.MODEL_FOLDER) or [NONE_FOUND]
        return io.Schema(
            node_id="UncropLoadCaptioner",
            display_name="Load Captioner",
            category="Uncrop/caption",
            **host.search_aliases(
                "blip", "git captioner", "image captioning model", "interrogator", "image to prompt"
            ),
            description=(
                "Loads an image-captioning model (BLIP or GIT) from models/captioners/<name>/. "
                "Connect it to Caption Image, or to the Inpaint/Outpaint samplers, which then write "
                "their prompt from the image when the prompt is empty. The options here are the "
                "ones the samplers use."
            ),
            inputs=[
                io.Combo.Input(
                    "model",
                    options=models,
                    default=models[0],
                    tooltip=(
                        "A sub-folder of models/captioners holding config.json, model.safetensors, "
                        "preprocessor_config.json and the tokenizer files (e.g. the files of "
                        "Salesforce/blip-image-captioning-large or microsoft/git-base-coco)."
                    ),
                ),
                *_option_inputs(),
            ],
            outputs=[
                CAPTIONER.Output(
                    display_name="captioner",
                    tooltip="Connect to Caption Image, or to a sampler to write empty prompts.",
                )
            ],
        )

    @classmethod
    def fingerprint_inputs(
        cls, model: str | None, region, max_length, beams, template, prefix
    ) -> str:
        """The files' dates and sizes: replaced weights under the same name load again.
        A linked name comes as None: the link is in ComfyUI's cache key already."""
        if model is None:
            return "linked"
        try:
            return repr(file_stamp(find_captioner(model)))
        except UncropError:
            return model  # execute says what is missing

    @classmethod
    def execute(
        cls, model: str, region: str, max_length: int, beams: int, template: str, prefix: str
    ) -> io.NodeOutput:
        device = host.torch_device()
        captioner = captioning.Captioner(
            find_captioner(model),
            device=device,
            dtype=host.caption_dtype(device),
            options=_options(region, max_length, beams, template, prefix),
            placement=ComfyPlacement,
        )
        return io.NodeOutput(captioner)


class CaptionImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropCaptionImage",
            display_name="Caption Image",
            category="Uncrop/caption",
            **host.search_aliases(
                "caption", "image to prompt", "interrogate", "describe image", "auto prompt", "blip"
            ),
            description=(
                "Writes a prompt describing the image with a captioning model. With a mask and "
                "region 'visible', only what the mask leaves visible is described. One line per "
                "image of the batch; wired to an Uncrop sampler's prompt, each image of the same "
                "batch is painted with its own line. The caption is also shown on the node, so "
                "the node runs even with nothing connected to its output."
            ),
            hidden=[io.Hidden.unique_id],
            inputs=[
                CAPTIONER.Input("captioner", tooltip="From Load Captioner."),
                io.Image.Input("image", tooltip="The image to describe."),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Optional; 1 = the hole to fill, which is not described.",
                ),
                *_option_inputs(),
            ],
            outputs=[
                io.String.Output(
                    display_name="caption",
                    tooltip=(
                        "The caption of each image, one per line for a batch. An Uncrop "
                        "sampler given it paints each image of that batch with its own line."
                    ),
                )
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        captioner: captioning.Captioner,
        image,
        region: str,
        max_length: int,
        beams: int,
        template: str,
        prefix: str,
        mask=None,
    ) -> io.NodeOutput:
        captions = captioner.caption(
            image,
            mask,
            options=_options(region, max_length, beams, template, prefix),
            progress=host.Progress(),
        )
        text = captioning.Captions(captions)  # a sampler takes each image's own line
        shown = str(text)  # plain text for the editor and the history
        host.show_text(cls, shown)
        return io.NodeOutput(text, ui=ui.PreviewText(shown))
