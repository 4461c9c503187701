"""Draw the template browser's thumbnails: ``workflows/<name>.jpg`` for each workflow.

ComfyUI's template browser shows ``<name>.jpg`` beside ``<name>.json`` (a gradient
where there is none). Each picture is drawn from the bundled sample with the
workflow's own settings:

- model-free workflows show their real output; the inpaint as a before/after split
  (left: the photo with the area to fill tinted red; right: the fill);
- diffusion workflows cannot be run without a model, so they show what the model is
  given: the photo or canvas, with the area the model paints striped over its
  pre-fill.

A thin white line marks where the original photo sits on an outpaint canvas.

    .venv/bin/python workflows/make_thumbnails.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from uncrop.core import canvas, imageio, masks, model_free

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "coffee.jpg"
SAMPLE_MASK = ROOT / "samples" / "coffee-mask.png"
WIDTH = 512  # px; the browser's cards are about 250 px wide, twice that for sharp screens
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


def _frame(picture: Image.Image, plan: canvas.CanvasPlan) -> None:
    x0, y0 = max(plan.x, 0), max(plan.y, 0)
    x1 = min(plan.x + plan.scaled_w, plan.canvas_w) - 1
    y1 = min(plan.y + plan.scaled_h, plan.canvas_h) - 1
    ImageDraw.Draw(picture).rectangle((x0, y0, x1, y1), outline=(255, 255, 255), width=2)


def _picture(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray((rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8))


def _inpaint_mask(grow: int, feather: float) -> torch.Tensor:
    mask = imageio.load_mask(SAMPLE_MASK)
    return masks.refine_mask(mask, grow_px=grow, feather_px=feather)


def inpaint_model_free(image: torch.Tensor) -> Image.Image:
    mask = _inpaint_mask(grow=4, feather=3.0)  # the workflow's Refine Mask
    out = model_free.inpaint(image, mask, "smooth")
    before = _tint(_rgb(image), mask[0].numpy(), RED, 0.6)
    xs = torch.nonzero(mask[0].amax(dim=0) > 0.5).flatten()
    cut = int(xs.float().mean())  # the divider crosses the hole: half before, half after
    split = np.concatenate([before[:, :cut], _rgb(out)[:, cut:]], axis=1)
    split[:, cut - 1 : cut + 1] = 1.0
    return _picture(split)


def inpaint_diffusion(image: torch.Tensor) -> Image.Image:
    mask = _inpaint_mask(grow=8, feather=0.0)
    prefill = model_free.inpaint(image, mask, "edge")  # the workflow's pre-fill
    return _picture(_stripes(_rgb(prefill), mask[0].numpy()))


def _outpaint(image: torch.Tensor, method: str, striped: bool) -> Image.Image:
    plan = canvas.plan_target(image.shape[2], image.shape[1], 1024, 512, "pad", "center", 8)
    out, mask = model_free.outpaint(image, plan, method)
    rgb = _rgb(out)
    if striped:
        rgb = _stripes(rgb, mask[0].numpy())
    picture = _picture(rgb)
    _frame(picture, plan)
    return picture


RECIPES = {
    "inpaint-model-free": inpaint_model_free,
    "inpaint-diffusion": inpaint_diffusion,
    "outpaint-model-free": lambda image: _outpaint(image, "mirror", striped=False),
    "outpaint-diffusion": lambda image: _outpaint(image, "edge", striped=True),
    "outpaint-autocaption": lambda image: _outpaint(image, "edge", striped=True),
    "outpaint-comfyui-ksampler": lambda image: _outpaint(image, "edge", striped=True),
}


def main() -> None:
    image, _ = imageio.load_image(SAMPLE)
    names = sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))
    missing = sorted(set(names) - set(RECIPES))
    if missing:
        raise SystemExit(f"no thumbnail recipe for: {', '.join(missing)}")
    for name in names:
        picture = RECIPES[name](image)
        picture = picture.resize(
            (WIDTH, round(WIDTH * picture.height / picture.width)), Image.LANCZOS
        )
        path = ROOT / "workflows" / f"{name}.jpg"
        picture.save(path, quality=85, optimize=True)
        print(f"{path.relative_to(ROOT)}: {picture.width}x{picture.height}")


if __name__ == "__main__":
    main()
