"""``uncrop``: the engine from the command line, with no ComfyUI.

    uncrop inpaint IMAGE --mask MASK -o OUT
    uncrop outpaint IMAGE --width W --height H [--fit pad] [--anchor center] -o OUT
    uncrop outpaint IMAGE --left 128 --right 128 [--unit px] -o OUT
    uncrop caption IMAGE [--mask MASK] [--captioner PATH]
    uncrop demo [-o DIR]

Exit codes: 0 done, 2 bad input (the message says which), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

import torch

from .core import canvas, caption, imageio, model_free, models, sampling
from .core.errors import UncropError
from .core.fill import DEFAULT_COLOR, DEFAULT_PATCH_SIZE, FILL_METHODS, PATCH_METHODS, parse_color
from .core.inputs import match_mask
from .core.masks import refine_mask
from .core.patchmatch import check_patch_size

log = logging.getLogger("uncrop")

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE_IMAGE = SAMPLES / "uncrop-coffee.jpg"
SAMPLE_MASK = SAMPLES / "uncrop-coffee-mask.png"


class TqdmProgress:
    """A ProgressHook drawn as a tqdm bar on stderr (hidden when not a terminal)."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self._bar = tqdm(total=1, desc=desc, unit="img", disable=None, leave=False)

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def check_interrupted(self) -> None:
        return None

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_common(p: argparse.ArgumentParser, default_method: str) -> None:
    p.add_argument(
        "image", help="input image (PNG, JPEG, WebP, TIFF; RGBA and 16-bit grey are kept)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="where to write the result (.png, .webp, .tif keep pixels exactly; .jpg is lossy)",
    )
    p.add_argument(
        "--method",
        choices=[*FILL_METHODS, "none"],
        help=(
            f"model-free fill method (default: {default_method}); with --model, the hole's "
            f"pre-fill (default: {sampling.SamplerSettings.prefill}, as in the nodes; none: no pre-fill)"
        ),
    )
    p.set_defaults(default_method=default_method)
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the fill methods that use randomness (patch, pattern, noise); with "
        "--model, the sampling seed",
    )
    p.add_argument(
        "--color",
        help=(
            f"colour for --method color (hex; default {DEFAULT_COLOR}; #rrggbbaa gives an "
            "RGBA image's fill that alpha; not with --model)"
        ),
    )
    p.add_argument(
        "--patch-size",
        type=int,
        help=f"patch side for --method patch/pattern (odd; default {DEFAULT_PATCH_SIZE}; not with --model)",
    )
    p.add_argument(
        "--source-mask",
        help="image or URL; white = where --method patch or pattern may copy from (not with --model)",
    )
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps")
    _add_diffusion(p)


# The diffusion flags and the SamplerSettings field each sets. None = not given: the
# settings' own defaults apply, and without --model a given one is refused, not ignored.
DIFFUSION_FLAGS = {
    "--prompt": "prompt",
    "--negative-prompt": "negative_prompt",
    "--steps": "steps",
    "--guidance": "guidance",
    "--strength": "strength",
    "--scheduler": "scheduler",
    "--mask-blur": "mask_blur",
    "--resolution": "resolution",
}


# The model-free fill's option flags (flag: dest) and the methods that read each.
FILL_FLAGS = {"--color": "color", "--patch-size": "patch_size", "--source-mask": "source_mask"}
FILL_FLAG_METHODS = {
    "--color": ("color",),
    "--patch-size": PATCH_METHODS,
    "--source-mask": PATCH_METHODS,
}


def _given(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """Those of ``flags`` (flag: dest) given on the command line: their value is not None."""
    return [flag for flag, dest in flags.items() if getattr(args, dest, None) is not None]


def _add_diffusion(p: argparse.ArgumentParser) -> None:
    d = sampling.SamplerSettings()
    g = p.add_argument_group("diffusion (with --model; without it the model-free --method runs)")
    g.add_argument(
        "--model",
        help="diffusers model folder or single .safetensors checkpoint (SD 1.x/2.x, SDXL)",
    )
    g.add_argument(
        "--controlnet", help="inpaint ControlNet: a .safetensors file or a diffusers folder"
    )
    g.add_argument("--prompt", help="what to paint (empty: --captioner, or none)")
    g.add_argument("--negative-prompt", help="what to avoid")
    g.add_argument("--steps", type=int, help=f"denoising steps (default: {d.steps})")
    g.add_argument("--guidance", type=float, help=f"guidance scale (default: {d.guidance:g})")
    g.add_argument(
        "--strength",
        type=float,
        help=f"denoise strength, above 0 up to 1 (default: {d.strength:g})",
    )
    g.add_argument(
        "--scheduler", choices=list(sampling.SCHEDULERS), help=f"sampler (default: {d.scheduler})"
    )
    g.add_argument(
        "--mask-blur",
        type=float,
        help=f"seam feather inside the mask, px (default: {d.mask_blur:g})",
    )
    g.add_argument("--resolution", type=int, help="window side, px (default: 0, the native size)")
    g.add_argument(
        "--dtype",
        choices=("auto", "fp16", "bf16", "fp32"),
        help="weights' precision (default: auto)",
    )


class _Help(argparse.HelpFormatter):
    """Help that names each option's default, where it has one and the text does not."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or action.default is None
            or isinstance(action.default, bool)
            or action.default in ("", argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: {action.default})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uncrop", description="Inpaint and outpaint images.", formatter_class=_Help
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True)
    # -v after the subcommand too (SUPPRESS: not given there, the one before stays)
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more detail"
    )

    p = sub.add_parser(
        "inpaint", parents=[verbose], formatter_class=_Help, help="fill the masked area of an image"
    )
    _add_common(p, "smooth")
    p.add_argument("--mask", required=True, help="mask image or http(s) URL; white = area to fill")
    p.add_argument(
        "--channel",
        choices=imageio.MASK_CHANNELS,
        default="luminance",
        help="mask channel; alpha means transparent = fill",
    )
    p.add_argument("--invert", action="store_true", help="invert the mask")
    p.add_argument(
        "--grow", type=int, default=0, help="grow (or with a negative value shrink) the mask, px"
    )
    p.add_argument("--feather", type=float, default=0.0, help="feather the mask edge, px")

    _add_captioner(p)

    p = sub.add_parser(
        "outpaint",
        parents=[verbose],
        formatter_class=_Help,
        help="extend an image beyond its borders",
    )
    _add_common(p, "pattern")
    p.add_argument("--width", type=int, help="target width (with --height)")
    p.add_argument("--height", type=int, help="target height (with --width)")
    p.add_argument(
        "--fit", choices=canvas.FITS, default="pad", help="how the image fits the target size"
    )
    p.add_argument(
        "--anchor", choices=canvas.ANCHORS, default="center", help="where the image sits"
    )
    for side in ("left", "top", "right", "bottom"):
        p.add_argument(f"--{side}", type=float, default=0, help=f"margin to add on the {side}")
    p.add_argument("--unit", choices=("px", "%"), default="px", help="unit of the margins")
    p.add_argument(
        "--multiple-of", type=int, default=8, help="round the canvas up to this multiple"
    )
    p.add_argument(
        "--overlap",
        type=int,
        help="with --model: let the generated area reach this many px into the image, fading "
        f"out, so the seam is painted over; 0 keeps every input pixel (default: "
        f"{sampling.OUTPAINT_OVERLAP})",
    )

    _add_captioner(p)

    p = sub.add_parser(
        "caption",
        parents=[verbose],
        formatter_class=_Help,
        help="write a prompt describing an image",
    )
    p.add_argument("image", help="the image to describe")
    p.add_argument("--mask", help="mask image or URL; white = hole, which is not described")
    p.add_argument(
        "--channel", choices=imageio.MASK_CHANNELS, default="luminance", help="mask channel"
    )
    p.add_argument("--invert", action="store_true", help="invert the mask")
    _add_captioner(p)
    defaults = caption.CaptionOptions()
    p.add_argument(
        "--region",
        choices=caption.REGIONS,
        default=defaults.region,
        help="visible: describe only what the mask leaves visible; whole: the whole image",
    )
    p.add_argument("--max-length", type=int, default=defaults.max_length, help="most tokens")
    p.add_argument("--beams", type=int, default=defaults.beams, help="beam-search width")
    p.add_argument(
        "--template", default=defaults.template, help="prompt template with {caption} in it"
    )
    p.add_argument("--prefix", default=defaults.prefix, help="text the caption must start with")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps")

    p = sub.add_parser(
        "demo",
        parents=[verbose],
        formatter_class=_Help,
        help="inpaint and outpaint the bundled sample photo",
    )
    p.add_argument(
        "-o", "--output", default="results", help="folder for the results (default: results)"
    )
    p.add_argument("--device", default="auto", help="torch device")
    return parser


def _model_free_fill(args: argparse.Namespace, device: torch.device) -> tuple[str, dict]:
    """The model-free fill's method and options from the command line."""
    method = args.method or args.default_method
    if method == "none":
        raise UncropError(
            "--method none leaves the hole unfilled: it is a pre-fill choice for --model. "
            "Without --model, pick a fill method."
        )
    for flag in _given(args, FILL_FLAGS):
        if method not in FILL_FLAG_METHODS[flag]:
            raise UncropError(
                f"{flag}: --method {method} does not use it (it is for --method "
                f"{' or '.join(FILL_FLAG_METHODS[flag])}); leave it out or pick that method."
            )
    source = args.source_mask
    patch_size = DEFAULT_PATCH_SIZE if args.patch_size is None else args.patch_size
    check_patch_size(patch_size, "--patch-size")
    return method, {
        "color": parse_color(DEFAULT_COLOR if args.color is None else args.color, "--color"),
        "patch_size": patch_size,
        "source_mask": (
            _load_mask(source, "luminance", False, "--source-mask").to(device) if source else None
        ),
    }


def _load_mask(source: str, channel: str, invert: bool, name: str = "--mask") -> torch.Tensor:
    data = imageio.fetch_url(source, name=name) if imageio.is_url(source) else source
    return imageio.load_mask(data, channel=channel, invert=invert, name=name)


def _add_captioner(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--captioner",
        help=(
            "captioning model folder (BLIP or GIT: config.json, model.safetensors, "
            "preprocessor_config.json, tokenizer files); for inpaint/outpaint it writes the "
            "prompt when none is given. Default for caption: the first folder in "
            f"$UNCROP_MODELS_DIR/{caption.MODEL_FOLDER} (./models/{caption.MODEL_FOLDER} when unset)"
        ),
    )


def _captioner(path: str | None, device: torch.device) -> caption.Captioner:
    """The captioner at ``path``, else the first one in the models folder."""
    if not path:
        models = Path(os.environ.get("UNCROP_MODELS_DIR", "models")) / caption.MODEL_FOLDER
        found = sorted(p for p in models.glob("*") if p.is_dir()) if models.is_dir() else []
        if not found:
            raise UncropError(
                f"no captioner given and none found in '{models.resolve()}'; pass --captioner "
                f"PATH. {caption.folder_help(repr(str(models.resolve())))}"
            )
        path = str(found[0])
    return caption.Captioner(path, device=device)


def run_caption(args: argparse.Namespace) -> list[str]:
    device = models.default_device(args.device)
    image, _ = imageio.load_image(args.image)
    mask = _load_mask(args.mask, args.channel, args.invert) if args.mask else None
    options = caption.CaptionOptions(
        region=args.region,
        max_length=args.max_length,
        beams=args.beams,
        template=args.template,
        prefix=args.prefix,
    )
    with TqdmProgress("caption") as bar:
        return _captioner(args.captioner, device).caption(
            image, mask, options=options, progress=bar
        )


def _prompt_metadata(prompts: list[str]) -> dict[str, str]:
    """The prompt a diffusion run used, for the PNG's metadata (as the nodes do)."""
    return {sampling.PROMPT_METADATA_KEY: sampling.prompt_summary(prompts)}


def _model_free_only(args: argparse.Namespace) -> None:
    """Refuse options that only a diffusion run (``--model``) uses."""
    if getattr(args, "model", None) == "":
        raise UncropError("--model: empty; give a model folder or .safetensors file.")
    if getattr(args, "captioner", None):
        raise UncropError(
            "--captioner writes the prompt for --model; without --model no prompt is used. "
            "To caption an image, run: uncrop caption IMAGE."
        )
    given = _given(
        args,
        {
            **DIFFUSION_FLAGS,
            "--controlnet": "controlnet",
            "--dtype": "dtype",
            "--overlap": "overlap",
        },
    )
    if given:
        raise UncropError(
            f"{', '.join(given)}: {'these set' if len(given) > 1 else 'this sets'} the "
            "diffusion run; add --model, or leave them out for a model-free fill."
        )


def _prefill(args: argparse.Namespace) -> str:
    """The pre-fill of a ``--model`` run: ``--method``, with the nodes' default. The fill
    options are the nodes' too, so the flags that set them are refused, not ignored."""
    given = _given(args, FILL_FLAGS)
    if given:
        raise UncropError(
            f"{', '.join(given)}: with --model the pre-fill takes its default options, as in "
            "the nodes; leave these out (they set the model-free fill)."
        )
    return args.method or sampling.SamplerSettings.prefill


def _diffusion(args, device, job):
    """Load ``--model`` and run ``job(model, settings, captioner=, prepare_model=, progress=)``
    with the CLI's settings (checked first: a model can take a minute to load); the
    captioner (``--captioner``) writes the prompt when none is given. The model goes to
    ``device`` only once the captioner is done and released, so the two never share it."""
    fields = DIFFUSION_FLAGS.values()  # each flag's dest is its settings field
    given = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    settings = sampling.SamplerSettings(seed=args.seed, prefill=_prefill(args), **given)
    settings.check()
    if args.controlnet:  # before a minute of loading
        models.check_controlnet_path(args.controlnet)
    # Checks the folder now (a typo is named even when a prompt leaves it unused); loads
    # it only when it captions.
    captioner = _captioner(args.captioner, device) if getattr(args, "captioner", None) else None
    if settings.prompt.strip():
        captioner = None
    model = models.load_model(
        args.model,
        controlnet=args.controlnet,
        dtype=models.pick_dtype(device, args.dtype or "auto"),
    )
    print(f"model: {model.describe()}", file=sys.stderr)

    def prepare_model() -> None:
        if captioner is not None:
            captioner.release()
        model.to(device)

    with TqdmProgress("sampling") as bar:
        result = job(
            model, settings, captioner=captioner, prepare_model=prepare_model, progress=bar
        )
    if captioner is not None:
        print(f"prompt (captioned): {sampling.prompt_summary(result.prompts)}", file=sys.stderr)
    return result


def _load_input(args: argparse.Namespace) -> torch.Tensor:
    """The input image, its alpha kept as a fourth channel; the output checked first.
    Notes on ``args`` the input's bit depth and colour profile, for :func:`_save`."""
    imageio.output_format(args.output, "--output")
    image, _ = imageio.load_image(args.image, keep_alpha=True)
    args.traits = imageio.file_traits(args.image)
    return image


def _save(args: argparse.Namespace, image: torch.Tensor, metadata=None) -> Path:
    traits = args.traits
    imageio.save_image(image, args.output, metadata, "--output", traits.bits, traits.icc_profile)
    return Path(args.output)


def run_inpaint(args: argparse.Namespace) -> Path:
    device = models.default_device(args.device)
    image = _load_input(args)
    imageio.output_format(args.output, "--output", (image.shape[2], image.shape[1]))
    mask = _load_mask(args.mask, args.channel, args.invert)
    image, mask = image.to(device), mask.to(device)
    # --grow and --feather are the image's px: a mask file of another size is matched first
    _, mask = match_mask(image, mask, "image", "--mask", image_values=False)
    mask = refine_mask(mask, grow_px=args.grow, feather_px=args.feather)
    if getattr(args, "model", None):
        result = _diffusion(
            args, device, lambda m, s, **run: sampling.inpaint(m, image, mask, s, **run)
        )
        return _save(args, result.image, _prompt_metadata(result.prompts))
    _model_free_only(args)
    method, options = _model_free_fill(args, device)
    with TqdmProgress("inpaint") as bar:
        out = model_free.inpaint(image, mask, method, seed=args.seed, progress=bar, **options)
    return _save(args, out)


def _plan(args: argparse.Namespace, width: int, height: int) -> canvas.CanvasPlan:
    margins = (args.left, args.top, args.right, args.bottom)
    if args.width is not None or args.height is not None:
        if args.width is None or args.height is None:
            raise UncropError("--width and --height go together; give both.")
        if any(margins):
            raise UncropError("give either --width/--height or per-side margins, not both.")
        return canvas.plan_target(
            width, height, args.width, args.height, args.fit, args.anchor, args.multiple_of
        )
    if not any(margins):
        raise UncropError(
            "say how to grow the canvas: --width and --height, or --left/--top/--right/--bottom."
        )
    return canvas.plan_margins(
        width, height, *margins, unit=args.unit, multiple_of=args.multiple_of
    )


def run_outpaint(args: argparse.Namespace) -> Path:
    device = models.default_device(args.device)
    image = _load_input(args)
    plan = _plan(args, image.shape[2], image.shape[1])
    imageio.output_format(args.output, "--output", (plan.canvas_w, plan.canvas_h))
    if getattr(args, "model", None):
        overlap = sampling.OUTPAINT_OVERLAP if args.overlap is None else args.overlap
        if overlap < 0:
            raise UncropError(f"--overlap: expected 0 or more px, got {overlap}.")

        def job(model, settings, **run):
            return sampling.outpaint(
                model, image.to(device), plan, settings, overlap=overlap, **run
            )[0]

        result = _diffusion(args, device, job)
        return _save(args, result.image, _prompt_metadata(result.prompts))
    _model_free_only(args)
    method, options = _model_free_fill(args, device)
    with TqdmProgress("outpaint") as bar:
        out, _mask = model_free.outpaint(
            image.to(device), plan, method, seed=args.seed, progress=bar, **options
        )
    return _save(args, out)


def run_demo(args: argparse.Namespace) -> list[Path]:
    folder = Path(args.output)
    common = {
        "seed": 0, "color": None, "patch_size": None, "source_mask": None, "device": args.device
    }  # fmt: skip
    jobs = [
        ("inpaint", argparse.Namespace(
            image=str(SAMPLE_IMAGE), mask=str(SAMPLE_MASK), channel="luminance", invert=False,
            grow=4, feather=3.0, method="smooth", output=str(folder / "inpaint.png"), **common)),
        ("outpaint", argparse.Namespace(
            image=str(SAMPLE_IMAGE), width=1024, height=512, fit="pad", anchor="center",
            left=0, top=0, right=0, bottom=0, unit="px", multiple_of=8, method="pattern",
            output=str(folder / "outpaint.png"), **common)),
    ]  # fmt: skip
    written = []
    for name, job in jobs:
        written.append(run_inpaint(job) if name == "inpaint" else run_outpaint(job))
    return written


def _as_flag(message: str, args: argparse.Namespace) -> str:
    """``message`` naming the flag the user typed where it starts with an option's name,
    as the engine names the nodes' inputs ("multiple_of: ..." is "--multiple-of: ...")."""
    name = re.match(r"[a-z_]+", message)
    if name is None or name[0] not in vars(args) or name[0] in ("image", "command"):
        return message  # not an option (the image is the command's argument)
    return "--" + name[0].replace("_", "-") + message[name.end() :]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            if args.command == "inpaint":
                written = [run_inpaint(args)]
            elif args.command == "outpaint":
                written = [run_outpaint(args)]
            elif args.command == "caption":
                written = []
                print("\n".join(run_caption(args)))
            else:
                written = run_demo(args)
    except UncropError as exc:
        print(f"uncrop: error: {_as_flag(str(exc), args)}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    log.info("done in %.2f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
