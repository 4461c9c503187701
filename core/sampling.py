"""Diffusion inpainting and outpainting with a loaded :class:`~.models.InpaintModel`.

The sampler never runs a model on the whole photo. For each image it

1. checks the inputs and works out the prompt (a captioner may supply it),
2. plans windows: the mask's bounding box plus context, resized to the model's
   native resolution (:class:`SampleWindow`); holes far apart get a window each
   (up to :data:`WINDOWS_APART`), and a large outpaint area is covered by several
   overlapping native-size windows instead,
3. pre-fills the hole with a model-free fill, so the model sees plausible
   context (and a start for ``strength < 1``),
4. runs the diffusers inpaint pipeline on each window, reporting every step to
   the :class:`~.progress.ProgressHook` (progress, preview, cancel),
5. scales the result back, pastes it, and composites it through
   :func:`~.composite.composite`, so pixels where the mask is 0 are bit-identical.

A small hole in a 4K photo therefore costs one native-size job.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import canvas
from .caption import Captions
from .composite import COLOR_MATCH_MODES, color_match, composite
from .errors import OutOfMemory, UncropError
from .fill import FILL_METHODS, fill
from .inputs import (
    ALPHA_SEEN,
    MODEL_HOLE,
    SEED_LIMIT,
    check_image,
    check_seed,
    generator,
    hole_of,
    is_whole,
    match_mask,
    resize_mask,
)
from .masks import MAX_FEATHER, feather, label_islands, square_max
from .models import InpaintModel, diffusers_module
from .progress import CancelOnly, ProgressHook, or_null

log = logging.getLogger(__name__)

SCHEDULERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# Above this many times the native side, an outpaint area is tiled rather than shrunk.
TILE_ABOVE = 1.5


@dataclass(frozen=True)
class SampleWindow:
    """A box ``[x0, x1) x [y0, y1)`` of the image, sampled at ``sample_w x sample_h`` px."""

    x0: int
    y0: int
    x1: int
    y1: int
    sample_w: int
    sample_h: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @staticmethod
    def sample_size(width: int, height: int, native: int, multiple: int) -> tuple[int, int]:
        """Scale ``width x height`` to about ``native**2`` px of area, sides a ``multiple``."""
        scale = native / math.sqrt(width * height)
        w = max(multiple, round(width * scale / multiple) * multiple)
        h = max(multiple, round(height * scale / multiple) * multiple)
        return w, h

    @classmethod
    def around(
        cls,
        box: tuple[int, int, int, int],
        image_w: int,
        image_h: int,
        native: int,
        multiple: int,
        context: float = 0.5,
        min_context: int = 16,
    ) -> SampleWindow:
        """The window for mask bounding box ``box = (x0, y0, x1, y1)``.

        The box grows by ``context`` times its longer side (at least ``min_context``
        px) on every side, is widened towards a square where the image allows (the
        model's training shape), and is kept inside the image.
        """
        x0, y0, x1, y1 = box
        margin = max(min_context, round(context * max(x1 - x0, y1 - y0)))
        w = min(image_w, x1 - x0 + 2 * margin)
        h = min(image_h, y1 - y0 + 2 * margin)
        side = max(w, h)
        w, h = min(image_w, side), min(image_h, side)

        def place(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
            start = (lo + hi) // 2 - size // 2
            start = min(max(0, start), limit - size)
            return start, start + size

        wx0, wx1 = place(x0, x1, w, image_w)
        wy0, wy1 = place(y0, y1, h, image_h)
        sw, sh = cls.sample_size(w, h, native, multiple)
        return cls(wx0, wy0, wx1, wy1, sw, sh)


def mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)`` of the hole (:func:`hole_of`) in a ``[H,W]``
    mask, or None.

    One pass over the mask finds the rows; the columns are searched in those rows only.
    """
    ys = torch.nonzero(hole_of(mask.amax(dim=1))).flatten()
    if ys.numel() == 0:
        return None
    y0, y1 = int(ys[0]), int(ys[-1]) + 1
    xs = torch.nonzero(hole_of(mask[y0:y1].amax(dim=0))).flatten()
    return int(xs[0]), y0, int(xs[-1]) + 1, y1


def tile_windows(
    box: tuple[int, int, int, int],
    image_w: int,
    image_h: int,
    size: int,
    overlap: int,
    multiple: int = 8,
) -> list[SampleWindow]:
    """Native-size windows at scale 1 covering ``box``, overlapping by ``overlap`` px.

    A window side that is not a ``multiple`` (a frame or a ``resolution`` that is not)
    is sampled at the nearest one, slightly rescaled, the other side by the same
    factor, so the tile keeps its shape (a canvas 24 px high: both sides scaled up
    until it is one ``multiple`` high), unless that would sample more than ``size``
    squared (a strip a few px high is then stretched, as it must be).
    """

    def starts(lo: int, hi: int, limit: int) -> tuple[list[int], int]:
        span = min(size, limit)
        lo = max(0, min(lo, limit - span))
        hi = max(hi, lo + span)
        if hi - lo <= span:
            return [lo], span
        n = math.ceil((hi - lo - span) / (span - overlap)) + 1
        step = (hi - lo - span) / (n - 1)
        return [min(limit - span, round(lo + i * step)) for i in range(n)], span

    xs, w = starts(box[0], box[2], image_w)
    ys, h = starts(box[1], box[3], image_h)
    # The shorter side's rounding sets the scale of both (rounded apart, a 512x100 tile
    # was sampled at 512x128, stretched 1.28 times one way).
    short = min(w, h)
    scale = max(multiple, round(short / multiple) * multiple) / short
    sw, sh = (max(multiple, round(side * scale / multiple) * multiple) for side in (w, h))
    if sw * sh > size * size:  # a strip too thin to keep its shape within the model's size
        sw, sh = (max(multiple, round(side / multiple) * multiple) for side in (w, h))
    return [SampleWindow(x, y, x + w, y + h, sw, sh) for y in ys for x in xs]


def edge_ramp(window: SampleWindow, image_w: int, image_h: int, width: int) -> torch.Tensor:
    """``[h,w]`` weight: 1 inside, fading to 0 over ``width`` px towards window edges
    that lie inside the image (edges on the image border stay at 1)."""
    ramp = torch.ones(window.height, window.width)
    if width <= 0:
        return ramp
    lin = torch.linspace(1.0 / (width + 1), 1.0, width).clamp(max=1)
    n_y, n_x = min(width, window.height), min(width, window.width)
    if window.x0 > 0:
        ramp[:, :n_x] *= lin[:n_x]
    if window.x1 < image_w:
        ramp[:, -n_x:] *= lin[:n_x].flip(0)
    if window.y0 > 0:
        ramp[:n_y] *= lin[:n_y, None]
    if window.y1 < image_h:
        ramp[-n_y:] *= lin[:n_y].flip(0)[:, None]
    return ramp


@dataclass
class SamplerSettings:
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance: float = 7.0
    strength: float = 1.0
    scheduler: str = "euler"
    mask_blur: float = 4.0
    prefill: str = "edge"
    context: float = 0.5
    color_match: str = "none"
    controlnet_scale: float = 1.0
    resolution: int = 0  # side in px of a window's area; 0 = the model's native size

    def check(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise UncropError(
                f"scheduler: expected one of {', '.join(SCHEDULERS)}, got '{self.scheduler}'."
            )
        for name in ("prompt", "negative_prompt"):
            if not isinstance(getattr(self, name), str):
                raise UncropError(f"{name}: expected text, got {getattr(self, name)!r}.")
        if not is_whole(self.steps) or not 1 <= self.steps <= 1000:
            raise UncropError(f"steps: expected a whole number from 1 to 1000, got {self.steps!r}.")
        if (
            isinstance(self.strength, bool)
            or not isinstance(self.strength, numbers.Real)
            or not 0.0 < self.strength <= 1.0
        ):
            raise UncropError(f"strength: expected a value in (0, 1], got {self.strength!r}.")
        if int(self.steps * self.strength) < 1:
            raise UncropError(
                f"strength: {self.strength} of {self.steps} steps leaves no denoising step; "
                "raise steps or strength."
            )
        _check_between("guidance", self.guidance, 0.0, MAX_GUIDANCE)
        _check_between("mask_blur", self.mask_blur, 0.0, MAX_FEATHER, " px")
        _check_between("context", self.context, 0.0, MAX_CONTEXT)
        _check_between("controlnet_scale", self.controlnet_scale, 0.0, MAX_CONTROLNET_SCALE)
        if not is_whole(self.resolution) or (self.resolution and not 64 <= self.resolution <= 4096):
            raise UncropError(
                f"resolution: expected 0 (native) or a whole number of px from 64 to 4096, "
                f"got {self.resolution!r}."
            )
        if self.color_match not in COLOR_MATCH_MODES:
            raise UncropError(
                f"color_match: expected one of {', '.join(COLOR_MATCH_MODES)}, "
                f"got {self.color_match!r}."
            )
        if self.prefill != "none" and self.prefill not in FILL_METHODS:
            raise UncropError(
                f"prefill: expected none or one of {', '.join(FILL_METHODS)}, got '{self.prefill}'."
            )
        self.seed = check_seed(self.seed)  # a Python int: numpy's overflowed in seed + 1000 i


# Far past any use (the nodes stop at 30, 4 and 2), and finite: inf or NaN failed only
# after the model had sampled, or not at all.
MAX_GUIDANCE = 100.0
MAX_CONTEXT = 16.0
MAX_CONTROLNET_SCALE = 10.0


def _check_between(name: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= value <= hi:
        raise UncropError(f"{name}: expected {lo:g} to {hi:g}{unit}, got {value}.")


@dataclass
class SampleResult:
    image: torch.Tensor
    prompts: list[str]
    windows: list[list[SampleWindow]] = field(default_factory=list)


PROMPT_METADATA_KEY = "uncrop_prompt"
"""Key under which the prompt a run used is saved in a PNG's metadata."""


def prompt_summary(prompts: list[str]) -> str:
    """The prompts of a batch as one line (each distinct, non-empty prompt once)."""
    return " | ".join(dict.fromkeys(p for p in prompts if p))


def given_prompts(prompt: str, count: int) -> list[str]:
    """The given prompt of each of ``count`` images: a batch's :class:`.Captions`
    (from Caption Image) one each, any other text the same for all."""
    if not isinstance(prompt, Captions) or len(prompt.each) == 1:
        return [str(prompt)] * count
    if len(prompt.each) != count:
        raise UncropError(
            f"prompt: {len(prompt.each)} captions, one for each image captioned, for "
            f"{count} images to paint. Caption the batch that is painted, or connect the "
            "captioner to this node's captioner input and leave the prompt empty."
        )
    return list(prompt.each)


def resolve_prompts(
    prompt: str,
    image: torch.Tensor,
    mask: torch.Tensor | None,
    captioner,
    progress: ProgressHook | None = None,
) -> list[str]:
    """One prompt per image: the given one (see :func:`given_prompts`), else the
    captioner's, else empty. The captioner gets ``progress``'s cancel button
    (captioning a batch takes a while)."""
    if prompt.strip():
        return given_prompts(prompt, image.shape[0])
    if captioner is not None:
        captions = list(captioner.caption(image, mask, progress=CancelOnly(progress)))
        if len(captions) != image.shape[0]:
            raise UncropError(
                f"captioner: returned {len(captions)} captions for {image.shape[0]} images."
            )
        log.info("Prompt from captioner: %s", " | ".join(captions))
        return captions
    log.warning("No prompt and no captioner: sampling without a text prompt.")
    return [""] * image.shape[0]


# A word of more tokens than this may be split across pieces; shorter ones move whole.
SPLIT_WORDS_OVER = 8


def _token_pieces(tokenizer, text: str) -> list[list[int]]:
    """``text``'s tokens in pieces of what one pass of the text encoder reads (75 for
    every SD family: 77 positions less the start and end tokens); at least one piece.
    As in ComfyUI, a word that does not fit in a piece starts the next one, unless it
    is longer than ``SPLIT_WORDS_OVER`` tokens (CLIP tokenizes words one by one, so
    this is the text's own tokenization, cut between words)."""
    room = tokenizer.model_max_length - 2
    words = [w for w in text.split(" ") if w]
    pieces: list[list[int]] = [[]]
    if not words:
        return pieces
    for ids in tokenizer(words, add_special_tokens=False, verbose=False).input_ids:
        while ids:
            free = room - len(pieces[-1])
            if len(ids) <= free:
                pieces[-1] += ids
                break
            if len(ids) > SPLIT_WORDS_OVER or not pieces[-1]:
                pieces[-1] += ids[:free]
                ids = ids[free:]
            pieces.append([])
    return pieces


def _encode_pieces(tokenizer, encoder, pieces: list[list[int]], hidden: int | None):
    """Each piece as the pipeline encodes a prompt (start token, tokens, end token, padded),
    the outputs joined along the sequence: ``([1, 77 k, D], the first piece's output 0)``.
    ``hidden`` picks a hidden state (SDXL reads the penultimate) over the last output."""
    room = tokenizer.model_max_length - 2
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [
        [tokenizer.bos_token_id, *p, tokenizer.eos_token_id] + [pad] * (room - len(p))
        for p in pieces
    ]
    ids = torch.tensor(rows, device=encoder.device)
    out = encoder(ids, output_hidden_states=hidden is not None)
    states = out[0] if hidden is None else out.hidden_states[hidden]
    return states.reshape(1, -1, states.shape[-1]), out[0][:1]


# A short text is repeated to a length both texts' piece counts divide, at most this
# many times the longer's; past that it is padded with empty pieces.
MAX_REPEAT = 4


def long_prompt_embeds(model: InpaintModel, prompt: str, negative_prompt: str) -> dict | None:
    """The pipeline's text inputs as embeddings when the prompt or the negative prompt
    is longer than the text encoder reads at once, else None (the pipeline encodes them).

    As in ComfyUI, the text is encoded 75 tokens at a time and the pieces are joined
    along the sequence, so no word is cut off. The shorter of the two is repeated to a
    length both divide (up to ``MAX_REPEAT`` times the longer's): cross-attention over
    keys repeated whole gives what the unrepeated ones give. SDXL joins its two
    encoders' penultimate states, pools the first piece, and keeps zeros for an empty
    negative prompt where the model asks for them.
    """
    pipe = model.pipe
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    sdxl = len(encoders) == 2

    texts = (prompt, negative_prompt)
    tokens = {text: [_token_pieces(tokenizer, text) for tokenizer, _ in encoders] for text in texts}
    counts = [max(map(len, tokens[text])) for text in texts]
    if max(counts) == 1:
        return None
    total = math.lcm(*counts)
    if total > MAX_REPEAT * max(counts):  # 27 and 31 pieces: 837 of them
        total = max(counts)  # the shorter is padded with empty pieces instead

    def encode(text: str, pieces: int) -> tuple[torch.Tensor, torch.Tensor]:
        pieces = pieces if total % pieces == 0 else total
        states, pooled = [], None
        for (tokenizer, encoder), ids in zip(encoders, tokens[text], strict=True):
            ids = ids + [[]] * (pieces - len(ids))  # the encoders' pieces align
            embeds, pooled = _encode_pieces(tokenizer, encoder, ids, -2 if sdxl else None)
            states.append(embeds)
        joined = torch.cat(states, dim=-1).repeat(1, total // pieces, 1)
        return joined.to(model.dtype), pooled.to(model.dtype)  # pooled: the last encoder's

    with torch.no_grad():
        embeds, pooled = encode(prompt, counts[0])
        if sdxl and not negative_prompt and pipe.config.force_zeros_for_empty_prompt:
            negative, negative_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
        else:
            negative, negative_pooled = encode(negative_prompt, counts[1])
    out = {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
    if sdxl:
        out.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
    return out


def make_scheduler(model: InpaintModel, name: str):
    """Scheduler ``name`` over the checkpoint's own settings (never the last run's)."""
    diffusers = diffusers_module()
    cls_name, options = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(model.scheduler_config, **options)


class _StepReporter:
    """diffusers' ``callback_on_step_end``: progress, live preview and cancel per step."""

    def __init__(
        self, hook: ProgressHook, windows: int, settings: SamplerSettings, preview: Callable | None
    ):
        self.per_window = max(1, int(settings.steps * settings.strength))  # diffusers' count
        self.hook, self.total, self.preview, self.done = hook, windows * self.per_window, preview, 0

    def __call__(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        self.done += 1
        image = None
        if self.preview is not None and "latents" in kwargs:
            image = self.preview(kwargs["latents"][:1])
        self.hook.update(self.done, self.total, image)
        self.hook.check_interrupted()
        return {}

    def skip_window(self) -> None:
        """A planned window that earlier ones left nothing to paint in: its steps count
        as done, so the bar still ends full."""
        self.done += self.per_window
        self.hook.update(self.done, self.total)


def _check_controlnet(model: InpaintModel) -> None:
    """Refuse a ControlNet whose hint encoder shrinks the image by another factor than the
    model's VAE does (sampling failed deep inside torch on the sizes). Real SD ones match
    (8x); a file made for another family may not, and loads without complaint."""
    if model.controlnet is None:
        return
    hint = 2 ** (len(model.controlnet.config.conditioning_embedding_out_channels) - 1)
    if hint != model.vae_scale_factor:
        raise UncropError(
            f"controlnet: {Path(model.controlnet_path or '').name} shrinks the image {hint}x "
            f"and this model's latents are {model.vae_scale_factor}x smaller than its images; "
            "a ControlNet must be made for the same family as the model."
        )


def _pipeline_for(model: InpaintModel):
    """The plain inpaint pipeline, or a ControlNet inpaint pipeline over the same parts."""
    if model.controlnet is None:
        return model.pipe
    diffusers = diffusers_module()
    cls = (
        diffusers.StableDiffusionXLControlNetInpaintPipeline
        if model.info.base == "sdxl"
        else diffusers.StableDiffusionControlNetInpaintPipeline
    )
    modules, settings = cls._get_signature_keys(cls)
    parts = {k: v for k, v in model.pipe.components.items() if k in modules}
    # The checkpoint's own settings too (SDXL's force_zeros_for_empty_prompt, say).
    parts.update({k: model.pipe.config[k] for k in settings if k in model.pipe.config})
    if "add_watermarker" in settings:  # as the model's own pipeline: no watermark
        parts["add_watermarker"] = False
    pipe = cls(**parts, controlnet=model.controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# How torch words running out: CUDA and MPS say "out of memory", its CPU allocator
# "not enough memory" (Windows) or "can't allocate memory" (Linux).
_OOM_TEXTS = ("out of memory", "not enough memory", "can't allocate memory")


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or any(t in text for t in _OOM_TEXTS)


def _run_window(
    model: InpaintModel,
    pipe,
    image: torch.Tensor,
    mask: torch.Tensor,
    window: SampleWindow,
    prompt: str,
    settings: SamplerSettings,
    seed: int,
    reporter: _StepReporter,
) -> torch.Tensor:
    """Sample one window of ``image [1,H,W,C]``; return the result at window size."""
    ys, xs = window.slices
    crop = canvas.resize_image(image[:, ys, xs, :3], window.sample_w, window.sample_h)
    # Shrunk by the largest value each pixel covers: averaged, a 2 px scratch in a
    # big window fell under the pipeline's 0.5 and was not painted at all.
    crop_mask = resize_mask(mask[:, ys, xs], window.sample_h, window.sample_w).unsqueeze(1)
    device = model.device
    kwargs = {
        "prompt": prompt,
        "negative_prompt": settings.negative_prompt or None,
        "image": crop.movedim(-1, 1).to(device, model.dtype),
        "mask_image": crop_mask.clamp(0, 1).to(device, model.dtype),
        "height": window.sample_h,
        "width": window.sample_w,
        "strength": settings.strength,
        "num_inference_steps": settings.steps,
        "guidance_scale": settings.guidance,
        "output_type": "pt",
        "callback_on_step_end": reporter,
    }
    # At guidance 1 or less the pipeline reads no negative prompt: it must not lengthen
    # the prompt's embeddings either.
    negative = settings.negative_prompt if settings.guidance > 1 else ""
    embeds = long_prompt_embeds(model, prompt, negative)
    if embeds is not None:  # instead of the text, which the pipeline would cut at 75 tokens
        del kwargs["prompt"], kwargs["negative_prompt"]
        kwargs.update(embeds)
    if model.controlnet is not None:
        control = kwargs["image"].clone()
        control[(kwargs["mask_image"] >= MODEL_HOLE).expand_as(control)] = -1.0
        kwargs["control_image"] = control
        kwargs["controlnet_conditioning_scale"] = settings.controlnet_scale
    pipe.scheduler = make_scheduler(model, settings.scheduler)
    steps_done = reporter.done
    for attempt in range(2):
        # Each attempt from the seed's first noise and the window's first step: a retry
        # gives what a run with VAE tiling on from the start gives.
        kwargs["generator"] = generator(seed)
        reporter.done = steps_done
        try:
            model.apply_vae_tiling()
            out = pipe(**kwargs).images
            break
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if attempt == 0 and not model.vae_tiling:
                # sample() puts the model's own setting back when the run ends.
                log.warning("Out of memory; retrying with VAE tiling for the rest of this run.")
                model.set_vae_tiling(True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            raise OutOfMemory(
                f"out of memory sampling a {window.sample_w}x{window.sample_h} window "
                "even with VAE tiling; free memory (unload other models), lower the context, "
                "or use a smaller model."
            ) from exc
    out = out.float().to(image.device).movedim(1, -1).clamp(0, 1)
    return canvas.resize_image(out, window.width, window.height)


def sample(
    model: InpaintModel,
    image: torch.Tensor,
    mask: torch.Tensor,
    settings: SamplerSettings,
    *,
    tiles: bool = False,
    solid: torch.Tensor | None = None,
    captioner=None,
    prepare_model: Callable[[], object] | None = None,
    progress: ProgressHook | None = None,
    preview: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SampleResult:
    """Inpaint the hole (:func:`hole_of` the mask); ``tiles`` allows several windows for
    big areas; ``solid`` ``[B,H,W]`` marks pixels that take all of the generated image
    (see :func:`seam_weight`).

    ``prepare_model`` is called once the prompts are known, right before the model
    is used: a host moves the model to its GPU there, after any captioner has run,
    so loading the captioner cannot push the diffusion model back off the GPU.
    """
    settings.check()
    _check_controlnet(model)
    # Pixel values are checked where the windows read them (_sample_region); the rest
    # comes back exactly as it came, unclamped, with no pass over it.
    image, mask = match_mask(image, mask, image_values=False)
    grey = image if image.shape[-1] == 1 else None
    if grey is not None:  # models paint RGB; the result goes back to grey by luminance
        image = grey.expand(*grey.shape[:-1], 3)
    hook = or_null(progress)
    plans = [_plan_windows(model, mask[i], settings, tiles) for i in range(image.shape[0])]
    if not any(plans):  # nothing to paint: no caption, and the model stays where it is
        out = (grey if grey is not None else image).clone()
        return SampleResult(out, given_prompts(settings.prompt, image.shape[0]), plans)
    prompts = resolve_prompts(settings.prompt, image, mask, captioner, hook)
    if prepare_model is not None:
        prepare_model()
    reporter = _StepReporter(hook, sum(map(len, plans)), settings, preview)
    pipe = _pipeline_for(model)
    out = image.clone()
    tiling = model.vae_tiling  # an out-of-memory retry turns tiling on for this run only
    try:
        for i, windows in enumerate(plans):
            hook.check_interrupted()
            for group in _regions(windows):
                region = _union([windows[k] for k in group])
                ys, xs = region.slices
                out[i : i + 1, ys, xs] = _sample_region(
                    model, pipe, image[i : i + 1, ys, xs], mask[i : i + 1, ys, xs],
                    [_shift(windows[k], -region.x0, -region.y0) for k in group],
                    prompts[i], settings, (settings.seed + i * 1000 + group[0]) % SEED_LIMIT,
                    reporter,
                    None if solid is None else solid[i : i + 1, ys, xs],
                )  # fmt: skip
    finally:
        model.set_vae_tiling(tiling)
    if grey is not None:
        out = composite(grey, out, hole_of(mask).to(mask.dtype))
    return SampleResult(out, prompts, plans)


def _plan_windows(
    model: InpaintModel, mask: torch.Tensor, settings: SamplerSettings, tiles: bool
) -> list[SampleWindow]:
    """The windows that cover ``mask [H,W]``: one around it, one around each group of
    holes far apart, or tiles for a big area."""
    box = mask_box(mask)
    if box is None:
        return []
    native, multiple = settings.resolution or model.native_size, model.size_multiple
    h, w = mask.shape
    single = SampleWindow.around(box, w, h, native, multiple, settings.context)
    if tiles and max(single.width, single.height) > TILE_ABOVE * native:
        # The box grown by a quarter window, so the first tiles see real context.
        grow = native // 4
        x0, y0, x1, y1 = box
        box = (max(0, x0 - grow), max(0, y0 - grow), min(w, x1 + grow), min(h, y1 + grow))
        return tile_windows(box, w, h, native, native // 4, multiple)
    if max(single.width, single.height) > native:  # sampled shrunk: holes apart lose detail
        apart = _windows_apart(mask, native, multiple, settings.context)
        if apart is not None:
            return apart
    return [single]


# Holes whose windows do not overlap are sampled each in its own window, up to this
# many windows (each is one model run); masks of more islands than ISLANDS_CONSIDERED
# (dust, a scattered selection) are not even grouped: they take one window around all.
WINDOWS_APART = 8
ISLANDS_CONSIDERED = 64


def _windows_apart(
    mask: torch.Tensor, native: int, multiple: int, context: float
) -> list[SampleWindow] | None:
    """One window per group of holes in ``mask [H,W]`` whose windows overlap, when there
    are 2 to :data:`WINDOWS_APART` groups; else None.

    Two blemishes in opposite corners of a 4K photo: one window around both is the
    whole photo, sampled at about an eighth of its size; apart, each is a small
    window sampled at the model's size.
    """
    from scipy.ndimage import find_objects

    h, w = mask.shape
    labels, count = label_islands(hole_of(mask).cpu().numpy())
    if not 1 < count <= ISLANDS_CONSIDERED:
        return None
    boxes = [(xs.start, ys.start, xs.stop, ys.stop) for ys, xs in find_objects(labels)]
    while True:
        windows = [SampleWindow.around(b, w, h, native, multiple, context) for b in boxes]
        pair = next(
            (
                (a, b)
                for a in range(len(windows))
                for b in range(a + 1, len(windows))
                if _overlap(windows[a], windows[b])
            ),
            None,
        )
        if pair is None:
            break
        a, b = pair
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes.pop(b)
        boxes[a] = (min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1))
    return windows if 1 < len(windows) <= WINDOWS_APART else None


def _overlap(a: SampleWindow, b: SampleWindow) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _regions(windows: list[SampleWindow]) -> list[list[int]]:
    """The windows as regions sampled on their own, by index: each alone when none
    overlaps another (holes far apart, see :func:`_windows_apart`), else all together
    (tiles, which overlap their neighbours; or one window)."""
    apart = not any(_overlap(a, b) for k, a in enumerate(windows) for b in windows[k + 1 :])
    return [[k] for k in range(len(windows))] if apart else [list(range(len(windows)))]


def _union(windows: list[SampleWindow]) -> SampleWindow:
    x0, y0 = min(w.x0 for w in windows), min(w.y0 for w in windows)
    x1, y1 = max(w.x1 for w in windows), max(w.y1 for w in windows)
    return SampleWindow(x0, y0, x1, y1, x1 - x0, y1 - y0)


def _shift(win: SampleWindow, dx: int, dy: int) -> SampleWindow:
    return SampleWindow(
        win.x0 + dx, win.y0 + dy, win.x1 + dx, win.y1 + dy, win.sample_w, win.sample_h
    )


def _prefill_is_seen(model: InpaintModel, settings: SamplerSettings) -> bool:
    """Whether the hole's pre-fill can change the result.

    A 9-channel inpainting model at full strength never sees the hole's pixels:
    diffusers blanks them in the masked image and starts the latents from noise.
    """
    return not (model.info.is_inpaint_unet and settings.strength >= 1.0)


def _without_hidden_colours(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """An RGBA ``image [1,H,W,4]`` whose transparent pixels (alpha under ``ALPHA_SEEN``)
    take the colour of the nearest pixel seen outside the ``hole``: the colours the model
    is given. The colour hidden under them, often black, is no part of the picture; the
    model copied it into the painted hole. A faint pixel keeps its own colour, and no
    colour comes from the hole, which may hold what is being removed."""
    if image.shape[-1] != 4:
        return image
    hidden = image[..., 3] < ALPHA_SEEN
    if not bool(hidden.any()):
        return image
    sources = ~hidden & (hole < MODEL_HOLE)
    if bool(sources.any()):
        behind = fill(image[..., :3], (~sources).to(image.dtype), "edge")
    else:  # nothing seen to take a colour from
        behind = torch.full_like(image[..., :3], 0.5)
    out = image.clone()
    out[..., :3] = torch.where(hidden.unsqueeze(-1), behind, image[..., :3])
    return out


def _sample_region(
    model: InpaintModel,
    pipe,
    image: torch.Tensor,
    mask: torch.Tensor,
    windows: list[SampleWindow],
    prompt: str,
    settings: SamplerSettings,
    seed: int,
    reporter: _StepReporter,
    solid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pre-fill, sample each window and composite, all inside one region ``[1,h,w,C]``
    that holds every masked pixel of its windows (all of them, or one group of holes
    far apart), so the cost does not grow with the photo; ``solid`` as in
    :func:`seam_weight`."""
    given = image  # where the mask is 0 the result is this, bit for bit, even past 0..1
    image = check_image(image)
    # Only what the model treats as hole is replaced; softer edge pixels keep their real
    # content as context.
    hole = (mask >= MODEL_HOLE).to(image.dtype)
    shown = _without_hidden_colours(image, hole)
    if settings.prefill == "none" or not _prefill_is_seen(model, settings):
        current = shown.clone()
        if image.shape[-1] == 4:  # the model paints RGB: the alpha it paints under comes
            # from around the hole, as a pre-fill gives it (a new area stayed transparent),
            # and is opaque where nothing is known (the alpha alone filled grey: 0.5)
            current[..., 3:] = fill(image, hole, "edge")[..., 3:]
    else:
        current = fill(shown, hole, settings.prefill, seed=seed, progress=CancelOnly(reporter.hook))
    remaining = mask.clone()
    h, w = image.shape[1:3]
    native = settings.resolution or model.native_size
    pending = list(windows)
    for k in range(len(windows)):
        # Next, the window with the most already known or painted: the one beside the
        # photo, then its neighbours, whichever side the new area is on.
        win = min(pending, key=lambda win: float(remaining[0][win.slices].mean()))
        pending.remove(win)
        ys, xs = win.slices
        if not bool(hole_of(remaining[0][ys, xs]).any()):
            reporter.skip_window()
            continue
        out = _run_window(
            model, pipe, current, remaining, win, prompt, settings, seed + k, reporter
        )
        if len(windows) == 1:
            current[:, ys, xs, :3] = out
            break
        weight = edge_ramp(win, w, h, native // 8).to(current) * hole_of(remaining[0][ys, xs])
        patch = current[:, ys, xs, :3]
        current[:, ys, xs, :3] = patch + (out - patch) * weight[None, :, :, None]
        remaining[0][ys, xs] = torch.where(weight >= 0.999, 0.0, remaining[0][ys, xs])
    if settings.color_match != "none":
        current = color_match(current, image, mask, settings.color_match)
    seam = seam_weight(mask, settings.mask_blur, solid)
    result = composite(image, current, mask, seam)  # transparent pixels' share from the mask
    return torch.where(mask.unsqueeze(-1) > 0, result, given)


def seam_weight(mask: torch.Tensor, blur: float, solid: torch.Tensor | None = None) -> torch.Tensor:
    """How much of the generated image each pixel of ``[B,H,W]`` takes: the mask feathered
    over ``blur`` px inside itself, so pixels where it is 0 take none.

    The feather is divided by its largest value within ``blur`` px, so the middle of a
    hole thinner than the ramp (a scratch, a dot, even one joined to a big hole) takes
    as much as the mask gives it: ramped from both sides, it kept most of what was to
    be removed. ``solid`` pixels (an outpaint's new area, with nothing under it to
    blend with) take all of it.
    """
    weight = mask
    if blur > 0:
        f = feather(mask, blur)
        peak = square_max(f, math.ceil(blur)).clamp_min(1e-6)
        weight = torch.minimum(mask * f / peak, mask)
    if solid is not None:
        weight = torch.maximum(weight, solid)
    return weight


def inpaint(
    model: InpaintModel,
    image: torch.Tensor,
    mask: torch.Tensor,
    settings: SamplerSettings | None = None,
    *,
    captioner=None,
    prepare_model: Callable[[], object] | None = None,
    progress: ProgressHook | None = None,
    preview: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SampleResult:
    """Fill the masked area with the model, sampling only a window around the mask."""
    return sample(
        model, image, mask, settings or SamplerSettings(),
        captioner=captioner, prepare_model=prepare_model, progress=progress, preview=preview,
    )  # fmt: skip


# How far an outpaint's generated area reaches into the image by default, fading out:
# the seam is painted over, not left where the photo meets the new strip.
OUTPAINT_OVERLAP = 16


def outpaint(
    model: InpaintModel,
    image: torch.Tensor,
    plan: canvas.CanvasPlan,
    settings: SamplerSettings | None = None,
    *,
    overlap: int = 0,
    captioner=None,
    prepare_model: Callable[[], object] | None = None,
    progress: ProgressHook | None = None,
    preview: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[SampleResult, torch.Tensor]:
    """Place the image on the plan's canvas and generate the new area.

    Returns the result and the mask that was generated (new area plus the
    ``overlap`` band). Where one window around the new area would be over
    ``TILE_ABOVE`` times the native side, it is covered with overlapping native-size
    windows, each sampled after its neighbours nearer the photo so it sees them.
    """
    settings = settings or SamplerSettings()
    settings.check()  # where there is nothing to generate too: bad settings fail alike
    placed, mask = canvas.expand_canvas(image, plan, overlap=overlap)
    if not plan.adds_area:
        return SampleResult(placed, given_prompts(settings.prompt, placed.shape[0])), mask
    new_area = canvas.outpaint_mask(plan, 0, device=placed.device).to(placed.dtype)
    result = sample(
        model, placed, mask, settings, tiles=True,
        solid=new_area.expand_as(mask), captioner=captioner, prepare_model=prepare_model,
        progress=progress, preview=preview,
    )  # fmt: skip
    return result, mask
