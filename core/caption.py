"""Writing a prompt from an image with an image-captioning model.

A captioner is a model folder laid out as on the Hugging Face hub (``config.json``,
``model.safetensors``, the image processor's and the tokenizer's files), loaded
with ``transformers`` from disk only: never from the network, never with remote
code and never from pickle weights. Two families are supported, told apart by
``model_type`` in ``config.json``:

- ``blip``: ``BlipForConditionalGeneration`` (e.g. Salesforce/blip-image-captioning-base
  or -large); a prefix makes it continue that text ("a photography of ...").
- ``git``: ``GitForCausalLM`` (e.g. microsoft/git-base-coco or git-large-coco).

Masks point the usual way, 1 = the hole to fill. With ``region="visible"`` the
model never sees the hole: each image is cropped to the bounding box of what the
mask leaves visible, and hole pixels still inside that box are replaced by a blur
of their surroundings (:func:`push_pull_fill`: no content of their own), so a
caption describes only what will be kept. Transparent pixels are hidden the same
way, and each picture is shrunk before it is prepared and padded to what its
processor crops to (:func:`picture_for_model`).
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import UncropError
from .inputs import MODEL_HOLE, check_image, is_whole, match_mask
from .masks import box_of
from .models import PICKLE_SUFFIXES, default_device, file_stamp
from .progress import ProgressHook, or_null

log = logging.getLogger(__name__)

MODEL_FOLDER = "captioners"
"""The ComfyUI model folder name (``models/captioners/<model>/``)."""

FAMILIES: dict[str, tuple[str, str]] = {
    "blip": ("BLIP", "BlipForConditionalGeneration"),
    "git": ("GIT", "GitForCausalLM"),
}
"""``config.json`` model_type -> (label, transformers class)."""

REGIONS = ("visible", "whole")
TRANSPARENT = 1 / 255
"""An RGBA pixel with less alpha than this (under one 8-bit level) is not seen."""

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")

EXPECTED_FILES = (
    "config.json, model.safetensors, preprocessor_config.json and the tokenizer files "
    "(tokenizer.json or vocab.txt, with tokenizer_config.json)"
)
EXAMPLES = "Salesforce/blip-image-captioning-large or microsoft/git-base-coco"


def folder_help(where: str | None = None) -> str:
    """Which files a captioner's folder needs, and where captioners go if ``where`` names
    the folder(s) searched (a folder given by path needs no word on where)."""
    files = (
        f"{EXPECTED_FILES}, for example the files of {EXAMPLES} (BLIP or GIT; safetensors "
        "weights only)."
    )
    if where is None:
        return f"A captioner's folder holds {files}"
    return f"Put each captioning model in its own sub-folder of {where}, holding {files}"


@dataclass(frozen=True)
class CaptionOptions:
    """How to caption.

    ``region``: ``visible`` describes only what the mask leaves visible, ``whole``
    the whole image. ``max_length``: most tokens the model may write. ``beams``:
    beam-search width (1 = greedy). ``template``: the prompt, with ``{caption}``
    where the caption goes. ``prefix``: text the caption must start with
    (conditional captioning, e.g. "a photography of").
    """

    region: str = "visible"
    max_length: int = 40
    beams: int = 3
    template: str = "{caption}"
    prefix: str = ""

    def checked(self) -> CaptionOptions:
        if self.region not in REGIONS:
            raise UncropError(f"region: expected one of {', '.join(REGIONS)}, got '{self.region}'.")
        if not is_whole(self.max_length) or not 1 <= self.max_length <= 512:
            raise UncropError(f"max_length: expected 1 to 512 tokens, got {self.max_length!r}.")
        if not is_whole(self.beams) or not 1 <= self.beams <= 16:
            raise UncropError(f"beams: expected 1 to 16, got {self.beams!r}.")
        if "{caption}" not in self.template:
            raise UncropError(
                f"template: must contain {{caption}} where the caption goes, got '{self.template}'."
            )
        return self


class Captions(str):
    """A batch's captions as one text, a line per image, that keeps each one: a
    sampler given it as its prompt paints each image with its own caption (as plain
    text, every image would get every line)."""

    each: tuple[str, ...]

    def __new__(cls, captions: list[str]) -> Captions:
        text = super().__new__(cls, "\n".join(captions))
        text.each = tuple(captions)
        return text

    def __reduce__(self):  # copies and pickles (ComfyUI's history deep-copies outputs)
        return (Captions, (list(self.each),))


def apply_template(template: str, caption: str) -> str:
    """``template`` with ``{caption}`` replaced (other braces are left alone), on one
    line: a batch's text has a line per image, and a text encoder reads a line break
    as a space."""
    if not caption:
        return ""
    return " ".join(template.replace("{caption}", caption).split())


SHOWN_SIDE = 768
"""A picture is shrunk to this longest side before the rest of its preparation: twice
the largest input of the supported captioners (BLIP-large reads 384x384, GIT 224x224),
so their own resize still has pixels to spare. A 4K frame took a second to prepare."""


def seen_pixels(
    image: torch.Tensor, mask: torch.Tensor | None, region: str = "visible"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image, seen)``: the checked images, and which of their pixels the model is
    shown, ``[B,H,W]`` bool.

    A pixel is hidden by the mask (at 0.5 or more, as the model's hole) unless
    ``region`` is ``whole``, and, in an RGBA image, by being transparent or less than
    half as opaque as the image's most opaque pixel: the colour under a transparent or
    faint pixel (often black) is not what the image shows.
    """
    if mask is None or region == "whole":
        image = check_image(image)
        seen = torch.ones_like(image[..., 0], dtype=torch.bool)
    else:
        image, mask = match_mask(image, mask)
        seen = mask < MODEL_HOLE
    if image.shape[-1] == 4:
        alpha = torch.where(seen, image[..., 3], 0.0)
        most = alpha.flatten(1).amax(dim=1)[:, None, None]
        seen = seen & (alpha >= TRANSPARENT) & (alpha >= 0.5 * most)
    return image, seen


def picture_for_model(
    image: torch.Tensor, seen: torch.Tensor, aspect: float | None = None
) -> Image.Image | None:
    """The picture of one image ``[H,W,C]`` a captioning model is shown, or None when
    ``seen [H,W]`` (see :func:`seen_pixels`) hides all of it.

    Cropped to the box of the seen pixels, and padded to the width:height ``aspect``
    a processor crops to (GIT's crops the middle square, so a wide strip's ends were
    cut off). Shrunk to :data:`SHOWN_SIDE`, each pixel averaging only what is seen.
    The hidden pixels inside, and the padding, take a blur of their surroundings
    (:func:`push_pull_fill`): no content of their own to describe.
    """
    box = box_of(seen)
    if box is None:
        return None
    # Channels first, as the pooling below wants them (4x faster at 4K than a view).
    rgb = image[box][..., :3].movedim(-1, 0).to(torch.float32).contiguous()
    if rgb.shape[0] == 1:
        rgb = rgb.expand(3, -1, -1)
    weight = seen[box].to(torch.float32)
    h, w = weight.shape
    if aspect is not None:  # the padded size; the padding is added once shrunk
        h, w = max(h, round(w / aspect)), max(w, round(h * aspect))
    scale = SHOWN_SIDE / max(h, w)
    if scale < 1:  # each pixel the mean of the seen pixels it covers, by area
        size = (max(1, round(weight.shape[0] * scale)), max(1, round(weight.shape[1] * scale)))
        values = F.interpolate((rgb * weight)[None], size=size, mode="area")[0]
        weight = F.interpolate(weight[None, None], size=size, mode="area")[0, 0]
        rgb = values / weight.clamp_min(1e-12)
        h, w = max(size[0], round(h * scale)), max(size[1], round(w * scale))
    if (h, w) != weight.shape:
        top, left = (h - weight.shape[0]) // 2, (w - weight.shape[1]) // 2
        pad = (left, w - weight.shape[1] - left, top, h - weight.shape[0] - top)
        rgb, weight = F.pad(rgb, pad), F.pad(weight, pad)
    rgb = rgb.movedim(0, -1)
    if bool((weight == 0).any()):
        rgb = push_pull_fill(rgb[None], weight[None])[0]
    arr = (rgb.clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def push_pull_fill(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Replace the pixels of ``image [1,H,W,C]`` of ``weight [1,H,W]`` 0 by a blur of
    their surroundings, the others weighing by their weight.

    Push-pull: the pixels, weighted, are averaged down a pyramid until every cell has
    some, then each level is filled from the one above. Linear time: under a second
    for a 4K image on one thread; the hole gets the colours around it and no shapes of
    its own, which is what a captioning model should not describe.
    """
    x = image.movedim(-1, 1)
    weight = weight.unsqueeze(1).to(x.dtype)
    levels = [(x * weight, weight)]
    while not bool((levels[-1][1] > 0).all()) and min(levels[-1][1].shape[-2:]) > 1:
        values, weight = levels[-1]
        levels.append(
            (F.avg_pool2d(values, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True))
        )
    values, weight = levels[-1]
    mean = values.sum(dim=(-2, -1), keepdim=True) / weight.sum(dim=(-2, -1), keepdim=True)
    out = torch.where(weight > 0, values / weight.clamp_min(1e-12), mean)
    for values, weight in reversed(levels[:-1]):
        up = F.interpolate(out, size=values.shape[-2:], mode="bilinear", align_corners=False)
        out = torch.where(weight > 0, values / weight.clamp_min(1e-12), up)
    return torch.where(levels[0][1] == 1, x, out).movedim(1, -1)


def images_for_model(
    image: torch.Tensor, mask: torch.Tensor | None, region: str = "visible"
) -> list[Image.Image | None]:
    """The pictures a captioning model that does not crop is shown, one per batch item
    (None for an image whose mask hides everything: there is nothing to describe)."""
    image, seen = seen_pixels(image, mask, region)
    return [picture_for_model(image[i], seen[i]) for i in range(image.shape[0])]


def check_model_folder(folder: str | os.PathLike) -> str:
    """Return the family (``blip`` or ``git``) of the model in ``folder`` or raise UncropError.

    Checks the files before ``transformers`` sees them, so each problem gets a
    message that says which folder and which files.
    """
    path = Path(folder)
    if not path.is_dir():
        raise UncropError(f"Captioner folder '{path}' does not exist. {folder_help()}")
    names = {p.name for p in path.iterdir()}
    config_file = path / "config.json"
    if "config.json" not in names:
        raise UncropError(f"Captioner folder '{path}' has no config.json. {folder_help()}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UncropError(
            f"Captioner folder '{path}': config.json is not readable JSON ({exc}); "
            "download it again."
        ) from exc
    family = config.get("model_type") if isinstance(config, dict) else None
    if family not in FAMILIES:
        known = ", ".join(f"{label} (model_type '{k}')" for k, (label, _) in FAMILIES.items())
        raise UncropError(
            f"Captioner folder '{path}': config.json has model_type '{family}'; supported "
            f"captioners are {known}, e.g. {EXAMPLES}."
        )
    label, cls_name = FAMILIES[family]
    architectures = config.get("architectures") or [cls_name]
    if cls_name not in architectures:  # a BLIP retrieval or question-answering model, say
        raise UncropError(
            f"Captioner folder '{path}' holds a {', '.join(map(str, architectures))}, not a "
            f"{label} captioning model ({cls_name}), e.g. {EXAMPLES}."
        )
    has_safetensors = any(n.endswith(".safetensors") for n in names) or (
        "model.safetensors.index.json" in names
    )
    if not has_safetensors:
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise UncropError(
                f"Captioner folder '{path}' has only pickle weights ({', '.join(pickles)}). "
                "Uncrop loads safetensors only, because pickle files can run code when "
                "loaded: download model.safetensors for this model instead (most hub models "
                "have one, some under the 'Files' tab of a safetensors conversion pull request)."
            )
        raise UncropError(f"Captioner folder '{path}' has no model.safetensors. {folder_help()}")
    missing = []
    if not names.intersection(PROCESSOR_FILES):
        missing.append("preprocessor_config.json")
    if not names.intersection(TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.txt)")
    if missing:
        raise UncropError(
            f"Captioner folder '{path}' is missing {' and '.join(missing)}. {folder_help()}"
        )
    return family


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere (CPU and MPS captioning in fp16 is slow or unstable)."""
    return torch.float16 if device.type == "cuda" else torch.float32


class Placement(Protocol):
    """Where a loaded model computes, and how it gets there before each use.

    The default moves it to one device once. ComfyUI's host supplies its own so
    the model is loaded and offloaded by ComfyUI's memory management.
    """

    def activate(self) -> torch.device:
        """Make the model ready to run; return the device its inputs must be on."""

    def release(self) -> None:
        """Give the memory back."""


class DevicePlacement:
    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device

    def activate(self) -> torch.device:
        self.model.to(self.device)
        return self.device

    def release(self) -> None:
        self.model.to("cpu")


PlacementFactory = Any  # Callable[[torch.nn.Module, torch.device], Placement]


@dataclass
class _Loaded:
    model: Any
    processor: Any
    placement: Placement
    dtype: torch.dtype


class Captioner:
    """A captioning model from one folder, with default :class:`CaptionOptions`.

    ``caption(image, mask)`` is what the samplers call; the model is loaded on
    first use and kept as long as this captioner (or a copy from :meth:`with_options`)
    is. Captioners of the same folder share it while any holds it.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        options: CaptionOptions | None = None,
        placement: PlacementFactory | None = None,
    ):
        self.folder = Path(folder)
        self.family = check_model_folder(self.folder)
        self.device = device or default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.options = (options or CaptionOptions()).checked()
        self._placement_factory = placement
        self._loaded: _Loaded | None = None

    def __repr__(self) -> str:
        return f"Captioner({FAMILIES[self.family][0]}, '{self.folder.name}')"

    @property
    def name(self) -> str:
        return self.folder.name

    def with_options(self, **changes: Any) -> Captioner:
        """The same model with other default options."""
        other = object.__new__(Captioner)
        other.__dict__.update(self.__dict__)
        other.options = replace(self.options, **changes).checked()
        return other

    def _cache_key(self) -> tuple:
        return (str(self.folder.resolve()), file_stamp(self.folder), str(self.device), self.dtype)

    def load(self) -> _Loaded:
        """The loaded model: shared with a captioner of the same files that holds it, or
        read from disk (again after the files changed)."""
        key = self._cache_key()
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = _load(
                self.folder, self.family, self.device, self.dtype, self._placement_factory
            )
            _CACHE[key] = loaded
        self._loaded = loaded
        return loaded

    def release(self) -> None:
        """Move this folder's model off the device and let it go: the next use reads it
        again (its memory is freed once no other captioner holds it)."""
        root = str(self.folder.resolve())
        for key, loaded in list(_CACHE.items()):
            if key[0] == root:
                _CACHE.pop(key, None)
                loaded.placement.release()
        self._loaded = None

    def caption(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        options: CaptionOptions | None = None,
        progress: ProgressHook | None = None,
    ) -> list[str]:
        """One prompt per image in ``image [B,H,W,C]``; ``mask [B,H,W]`` 1 = hole.

        An image whose mask hides everything gets an empty string.
        """
        opts = (options or self.options).checked()
        image, seen = seen_pixels(image, mask, opts.region)
        hook = or_null(progress)
        loaded = self.load()
        device = loaded.placement.activate()
        aspect = _crop_aspect(loaded.processor)
        captions = []
        total = image.shape[0]
        for i in range(total):
            hook.check_interrupted()  # before each picture is made: a 4K one takes a while
            picture = picture_for_model(image[i], seen[i], aspect)
            if picture is None:
                log.warning(
                    "Caption: image %d is masked or transparent entirely; nothing to describe.", i
                )
                captions.append("")
            else:
                text = _generate(loaded, self.family, picture, opts, device)
                captions.append(apply_template(opts.template, text))
            hook.update(i + 1, total)
        log.info("Caption (%s): %s", self.name, captions)
        return captions


# Loaded captioners by folder, file stamps, device and dtype, held weakly: each lives
# as long as a Captioner holds it (in ComfyUI the loader's output in the node cache, so
# "Free model and node cache" frees it), and captioners of the same files share it.
_CACHE: weakref.WeakValueDictionary[tuple, _Loaded] = weakref.WeakValueDictionary()


def release_captioners() -> None:
    """Move every loaded captioning model off its device; the next use of any
    captioner reads its model again."""
    for loaded in list(_CACHE.values()):
        loaded.placement.release()
    _CACHE.clear()


# Safetensors only, never code from the folder; and which weights the files lacked.
_SAFE_MODEL = {"use_safetensors": True, "trust_remote_code": False, "output_loading_info": True}


def _load(
    folder: Path,
    family: str,
    device: torch.device,
    dtype: torch.dtype,
    placement: PlacementFactory | None,
) -> _Loaded:
    try:
        import transformers
    except ImportError as exc:
        raise UncropError(
            "Captioning needs the 'transformers' package: pip install 'transformers>=4.50.3'."
        ) from exc
    model_cls = getattr(transformers, FAMILIES[family][1])
    log.info("Loading captioner %s (%s) on %s, %s", folder, family, device, dtype)
    try:
        model, loading = model_cls.from_pretrained(folder, local_files_only=True, **_SAFE_MODEL)
        auto = transformers.AutoProcessor
        processor = auto.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers, safetensors and tokenizers raise many kinds
        raise UncropError(
            f"Captioner folder '{folder}' could not be loaded as {FAMILIES[family][0]}: "
            f"{type(exc).__name__}: {exc}. The files may be incomplete or corrupt; download "
            f"{EXPECTED_FILES} again."
        ) from exc
    missing = sorted(loading.get("missing_keys") or [])
    if missing:  # transformers fills them in at random: a new caption on every load
        raise UncropError(
            f"Captioner folder '{folder}': its weights lack {len(missing)} of the "
            f"{FAMILIES[family][0]} captioner's parameters (first: {missing[0]}); the file is "
            f"incomplete or from another kind of model. Download {EXPECTED_FILES} again."
        )
    model = model.eval().to(dtype=dtype)
    model.requires_grad_(False)
    place = placement(model, device) if placement is not None else DevicePlacement(model, device)
    return _Loaded(model=model, processor=processor, placement=place, dtype=dtype)


def _crop_aspect(processor: Any) -> float | None:
    """The width:height a processor crops its input to (GIT's CLIP processor: the
    middle square), or None for one that resizes the whole picture (BLIP's)."""
    images = getattr(processor, "image_processor", processor)
    crop = getattr(images, "crop_size", None)
    if not getattr(images, "do_center_crop", False) or crop is None:
        return None
    # A dict in transformers 4, a SizeDict in 5.
    height, width = (getattr(crop, k, None) or dict(crop).get(k) for k in ("height", "width"))
    return float(width) / float(height) if height and width else None


def _generate(
    loaded: _Loaded, family: str, picture: Image.Image, opts: CaptionOptions, device: torch.device
) -> str:
    processor, model = loaded.processor, loaded.model
    prefix = opts.prefix.strip()
    if family == "blip":
        inputs = processor(images=picture, text=prefix or None, return_tensors="pt")
    else:
        inputs = processor(images=picture, return_tensors="pt")
        if prefix:
            tokenizer = processor.tokenizer
            ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            inputs["input_ids"] = torch.tensor([[tokenizer.cls_token_id, *ids]])
    kwargs = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    kwargs["pixel_values"] = inputs["pixel_values"].to(device=device, dtype=loaded.dtype)
    used = int(kwargs["input_ids"].shape[-1]) if "input_ids" in kwargs else 1
    if family == "blip" and "input_ids" in kwargs:
        used -= 1  # BLIP's generate drops the [SEP] its processor ends the prefix with
    with torch.inference_mode():
        ids = model.generate(
            **kwargs,
            max_new_tokens=min(int(opts.max_length), _token_room(model, family, used)),
            num_beams=int(opts.beams),
            do_sample=False,
        )
    return processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def _token_room(model: Any, family: str, used: int) -> int:
    """How many tokens the text decoder can still write after ``used`` of them.

    The decoder has a fixed number of positions; past them its position embedding
    raises ``IndexError`` on the CPU and a device-side assert on a GPU (which ruins
    the process's CUDA context, so it must never be reached). Some transformers
    releases number GIT's text positions after its image tokens (see
    :func:`_git_positions`), so there the room is smaller: still hundreds of tokens
    for git-base and git-large.
    """
    config = getattr(model.config, "text_config", None) or model.config
    positions = int(getattr(config, "max_position_embeddings", 512))
    room = positions - used
    rule = _git_positions() if family == "git" else "text"
    if rule == "after_image":
        room = positions - _git_image_tokens(model.config) - used + 1
    elif rule == "doubled":
        room = (positions - 1 - _git_image_tokens(model.config)) // 2 - used + 2
    if room < 1:
        raise UncropError(
            f"prefix: {used} tokens leave no room in this captioner's {positions} text positions "
            "(fewer with transformers 5.0 to 5.17 for GIT); shorten it."
        )
    return room


def _git_positions() -> str:
    """How the installed transformers numbers GIT's n-th written token (from 0).

    ``"text"``: ``n`` (4.x, 5.18 on). ``"after_image"``: ``n + image tokens`` (5.0:
    the cache's length, which holds the image tokens, is taken as the offset).
    ``"doubled"``: ``2n + image tokens`` (5.1 to 5.17: the tokens so far are counted
    twice as well). Measured with the tiny GIT of the tests at 5.0.0, 5.17 and 5.23.
    """
    import transformers

    parts = transformers.__version__.split(".")[:2]
    try:
        release = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        return "text"
    if release == (5, 0):
        return "after_image"
    return "doubled" if (5, 1) <= release < (5, 18) else "text"


def _git_image_tokens(config: Any) -> int:
    """The image tokens GIT puts before the text: one per patch plus a class token."""
    vision = config.vision_config
    per_image = (int(vision.image_size) // int(vision.patch_size)) ** 2 + 1
    return per_image * int(getattr(config, "num_image_with_embedding", None) or 1)
