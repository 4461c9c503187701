"""Draw the template browser's thumbnails: ``workflows/<name>.jpg`` for each workflow.

ComfyUI's template browser shows ``<name>.jpg`` beside ``<name>.json`` (a gradient
where there is none), fitted into a square card. Each picture is square and drawn
from the bundled sample with the workflow's own settings, labelled with how it works:

- inpaint: the area around the hole, split through it into before (the area to fill
  tinted red) and after;
- outpaint: the photo above, the grown canvas below (a white line marks the photo).

Model-free workflows show their real output. Diffusion workflows cannot run without a
model, so they show what the model is given: the area it paints is striped over the
pre-fill.

    .venv/bin/python workflows/make_thumbnails.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from uncrop.core import canvas, imageio, masks, model_free

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "uncrop-coffee.jpg"
SAMPLE_MASK = ROOT / "samples" / "uncrop-coffee-mask.png"
SIDE = 512  # px; the browser's cards are about 250 px wide, twice that for sharp screens
BACKGROUND = (32, 32, 32)  # the editor's dark theme
RED = np.array([0.95, 0.15, 0.15])
STRIPE = np.array([0.55, 0.35, 0.95])


def _rgb(image: torch.Tensor) -> np.ndarray:
    return image[0, ..., :3].clamp(0, 1).numpy().astype(np.float64)


def _tint(rgb: np.ndarray, mask: np.ndarray, colour: np.ndarray, amount: float) -> np.ndarray:
    a = (mask * amount)[..., None]
    return rgb * (1 - a) + colour * a


def _stripes(rgb: np.ndarray, mask: np.ndarray, period: int = 24) -> np.ndarray:
    """The masked area's pre-fill dimmed, under diagonal stripes: "a model paints this"."""
    y, x = np.mgrid[: mask.shape[0], : mask.shape[1]]
    on = ((x + y) % period) < period // 3
    return _tint(rgb, mask * np.where(on, 0.75, 0.45), STRIPE, 1.0)


def _picture(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray((rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8))


def _label(card: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=26)
    x0, y0, x1, y1 = draw.textbbox((22, SIDE - 48), text, font=font)
    draw.rounded_rectangle((x0 - 10, y0 - 8, x1 + 10, y1 + 8), radius=8, fill=BACKGROUND)
    draw.text((22, SIDE - 48), text, font=font, fill=(255, 255, 255))
    return card


def _inpaint_card(before: np.ndarray, after: np.ndarray, mask: torch.Tensor) -> Image.Image:
    """A square around the hole, before left of the hole's middle and after right of it."""
    h, w = before.shape[:2]
    xs = torch.nonzero(mask[0].amax(dim=0) > 0.5).flatten()
    cut = int(xs.float().mean())
    side = min(h, w)
    x0 = min(max(cut - side // 2, 0), w - side)
    split = np.concatenate([before[:, :cut], after[:, cut:]], axis=1)
    split[:, cut - 1 : cut + 1] = 1.0
    return _picture(split[:side, x0 : x0 + side]).resize((SIDE, SIDE), Image.LANCZOS)


def _inpaint_mask(grow: int, feather: float) -> torch.Tensor:
    mask = imageio.load_mask(SAMPLE_MASK)
    return masks.refine_mask(mask, grow_px=grow, feather_px=feather)


def inpaint_model_free(image: torch.Tensor) -> Image.Image:
    mask = _inpaint_mask(grow=4, feather=3.0)  # the workflow's Refine Mask
    out = model_free.inpaint(image, mask, "smooth")
    before = _tint(_rgb(image), mask[0].numpy(), RED, 0.6)
    return _inpaint_card(before, _rgb(out), mask)


def inpaint_diffusion(image: torch.Tensor) -> Image.Image:
    mask = _inpaint_mask(grow=8, feather=0.0)
    prefill = model_free.inpaint(image, mask, "edge")  # the workflow's pre-fill
    before = _tint(_rgb(image), mask[0].numpy(), RED, 0.6)
    return _inpaint_card(before, _stripes(_rgb(prefill), mask[0].numpy()), mask)


def _outpaint(image: torch.Tensor, method: str, striped: bool) -> Image.Image:
    """The photo in the top half, the 1024x512 canvas (the workflows' size) below."""
    plan = canvas.plan_target(image.shape[2], image.shape[1], 1024, 512, "pad", "center", 8)
    out, mask = model_free.outpaint(image, plan, method)
    rgb = _rgb(out)
    if striped:
        rgb = _stripes(rgb, mask[0].numpy())
    grown = _picture(rgb)
    ImageDraw.Draw(grown).rectangle(
        (plan.x, plan.y, plan.x + plan.scaled_w - 1, plan.y + plan.scaled_h - 1),
        outline=(255, 255, 255),
        width=3,
    )
    card = Image.new("RGB", (SIDE, SIDE), BACKGROUND)
    half = SIDE // 2
    photo = _picture(_rgb(image))
    fit = min((half - 16) / photo.height, SIDE / photo.width)
    photo = photo.resize((round(photo.width * fit), round(photo.height * fit)), Image.LANCZOS)
    card.paste(photo, ((SIDE - photo.width) // 2, (half - photo.height) // 2))
    card.paste(grown.resize((SIDE, half), Image.LANCZOS), (0, half))
    return card


RECIPES = {
    "inpaint-model-free": lambda image: _label(inpaint_model_free(image), "model-free"),
    "inpaint-diffusion": lambda image: _label(inpaint_diffusion(image), "diffusion"),
    "outpaint-model-free": lambda image: _label(
        _outpaint(image, "mirror", striped=False), "model-free"
    ),
    "outpaint-diffusion": lambda image: _label(_outpaint(image, "edge", striped=True), "diffusion"),
    "outpaint-autocaption": lambda image: _label(
        _outpaint(image, "edge", striped=True), "diffusion + auto caption"
    ),
    "outpaint-comfyui-ksampler": lambda image: _label(
        _outpaint(image, "edge", striped=True), "ComfyUI KSampler"
    ),
}


def main() -> None:
    image, _ = imageio.load_image(SAMPLE)
    names = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    missing = sorted(set(names) - set(RECIPES))
    if missing:
        raise SystemExit(f"no thumbnail recipe for: {', '.join(missing)}")
    for name in names:
        card = RECIPES[name](image)
        path = ROOT / "workflows" / f"{name}.jpg"
        card.save(path, quality=85, optimize=True)
        print(f"{path.relative_to(ROOT)}: {card.width}x{card.height}")


if __name__ == "__main__":
    main()
