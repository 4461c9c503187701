"""Canvas geometry for outpainting: where the image sits on a bigger canvas.

:class:`CanvasPlan` is a small pure description (no tensors) built either from
per-side margins or from a target size with a fit mode and an anchor;
:func:`expand_canvas` applies a plan to an IMAGE batch.

Fit modes for a target size:
- ``pad``: keep the whole image, scaled to fit inside the target, and generate the
  rest (the API's ``fit: canvas outpainting``).
- ``crop``: scale to cover the target and crop the overflow; nothing to generate.
- ``stretch``: resize to the target exactly; nothing to generate.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UncropError
from .inputs import at_least_float32, check_image, is_whole, premultiplied, unpremultiplied

FITS = ("pad", "crop", "stretch")
ANCHORS = (
    "center", "top", "bottom", "left", "right",
    "top-left", "top-right", "bottom-left", "bottom-right",
)  # fmt: skip
MAX_SIDE = 16384


@dataclass(frozen=True)
class CanvasPlan:
    """The original image, resized to ``scaled_w x scaled_h``, pasted at ``(x, y)`` on a
    ``canvas_w x canvas_h`` canvas. ``x``/``y`` are negative when the image is cropped."""

    source_w: int
    source_h: int
    scaled_w: int
    scaled_h: int
    canvas_w: int
    canvas_h: int
    x: int
    y: int

    @property
    def left(self) -> int:
        return max(0, self.x)

    @property
    def top(self) -> int:
        return max(0, self.y)

    @property
    def right(self) -> int:
        return max(0, self.canvas_w - self.x - self.scaled_w)

    @property
    def bottom(self) -> int:
        return max(0, self.canvas_h - self.y - self.scaled_h)

    @property
    def adds_area(self) -> bool:
        return any((self.left, self.top, self.right, self.bottom))


def _anchor_fractions(anchor: str) -> tuple[float, float]:
    """Where the image sits: (0, 0) is top-left, (1, 1) bottom-right."""
    if anchor not in ANCHORS:
        raise UncropError(f"anchor: expected one of {', '.join(ANCHORS)}, got '{anchor}'.")
    fx = 0.0 if "left" in anchor else 1.0 if "right" in anchor else 0.5
    fy = 0.0 if "top" in anchor else 1.0 if "bottom" in anchor else 0.5
    return fx, fy


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _check_multiple(multiple: int) -> None:
    if not is_whole(multiple) or multiple < 1:
        raise UncropError(f"multiple_of: expected 1 or more, a whole number, got {multiple!r}.")


def _check_size(w: int, h: int, what: str) -> None:
    if not (is_whole(w) and is_whole(h)) or w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE:
        raise UncropError(f"{what}: {w!r}x{h!r} is outside 1..{MAX_SIDE} whole px per side.")


def _check_image_size(w: int, h: int) -> None:
    """Any size with pixels: a big panorama may be scaled down or grown."""
    if not (is_whole(w) and is_whole(h)) or w < 1 or h < 1:
        raise UncropError(f"image size: expected whole px, 1 or more a side, got {w!r}x{h!r}.")


def plan_margins(
    width: int,
    height: int,
    left: float = 0,
    top: float = 0,
    right: float = 0,
    bottom: float = 0,
    unit: str = "px",
    multiple_of: int = 8,
) -> CanvasPlan:
    """Grow each side by a margin in px or in percent of the image width/height.

    When rounding the canvas up to ``multiple_of``, the extra pixels go to the sides
    already being grown (split evenly); an axis with no growth is centred.
    """
    _check_multiple(multiple_of)
    _check_image_size(width, height)
    margins = {"left": left, "top": top, "right": right, "bottom": bottom}
    for side, value in margins.items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        try:  # text, a bool or an int past float's range (10**400) fail here, by name
            number = float(value) if real else math.nan
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or number < 0:
            raise UncropError(f"{side}: expected a finite margin >= 0, got {value!r}.")
    if unit == "%":
        exact = {
            s: v / 100.0 * (width if s in ("left", "right") else height) for s, v in margins.items()
        }
    elif unit == "px":
        exact = dict(margins)
    else:
        raise UncropError(f"unit: expected 'px' or '%', got '{unit}'.")
    for side, value in exact.items():
        if value > MAX_SIDE:
            of = f" of {width if side in ('left', 'right') else height} px" if unit == "%" else ""
            raise UncropError(
                f"{side}: {margins[side]:g} {unit}{of} is more than a canvas side may have "
                f"({MAX_SIDE} px)."
            )
    px = {s: int(round(v)) for s, v in exact.items()}

    def distribute(a: int, b: int, size: int) -> tuple[int, int]:
        extra = _round_up(size + a + b, multiple_of) - (size + a + b)
        if a and b or not (a or b):
            return a + extra // 2, b + extra - extra // 2
        return (a + extra, b) if a else (a, b + extra)

    lx, rx = distribute(px["left"], px["right"], width)
    ty, by = distribute(px["top"], px["bottom"], height)
    cw, ch = width + lx + rx, height + ty + by
    _check_size(cw, ch, "canvas size")
    return CanvasPlan(width, height, width, height, cw, ch, lx, ty)


def plan_target(
    width: int,
    height: int,
    target_w: int,
    target_h: int,
    fit: str = "pad",
    anchor: str = "center",
    multiple_of: int = 8,
) -> CanvasPlan:
    """Fit a ``width x height`` image into a ``target_w x target_h`` canvas.

    The target is first rounded up to ``multiple_of``.
    """
    _check_multiple(multiple_of)
    if fit not in FITS:
        raise UncropError(f"fit: expected one of {', '.join(FITS)}, got '{fit}'.")
    _check_image_size(width, height)
    _check_size(target_w, target_h, "target size")
    cw, ch = _round_up(target_w, multiple_of), _round_up(target_h, multiple_of)
    _check_size(cw, ch, "target size rounded to multiple_of")
    fx, fy = _anchor_fractions(anchor)
    if fit == "stretch":
        return CanvasPlan(width, height, cw, ch, cw, ch, 0, 0)
    scale = min(cw / width, ch / height) if fit == "pad" else max(cw / width, ch / height)
    sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
    if scale != 1:  # resampled anyway: stretched by 1 px rather than leave a 1 px sliver
        sw, sh = (cw if abs(sw - cw) <= 1 else sw), (ch if abs(sh - ch) <= 1 else sh)
    if max(sw, sh) > MAX_SIDE:  # crop only: the whole image is scaled before it is cut
        raise UncropError(
            f"fit: 'crop' would scale the {width}x{height} image to {sw}x{sh} px to cover "
            f"{cw}x{ch}, more than {MAX_SIDE} px a side; its shape is too far from the "
            "target's. Use fit 'pad' or 'stretch', or crop the image first."
        )
    x = round((cw - sw) * fx)
    y = round((ch - sh) * fy)
    return CanvasPlan(width, height, sw, sh, cw, ch, x, y)


def resize_image(
    image: torch.Tensor, width: int, height: int, region: tuple[slice, slice] | None = None
) -> torch.Tensor:
    """Resize an IMAGE batch with antialiasing (bicubic up, area-aware down).

    RGBA is resampled with its colour weighted by alpha (premultiplied): the colour
    hidden under transparent pixels, often black, would otherwise bleed into the
    visible pixels beside them as a dark fringe.

    ``region`` (rows, columns of the resized image) returns only that part, made
    without the whole: the two axes are resampled one after the other, each cut to
    the region right after its pass, the axis that loses the larger share first. A
    2x2 image cropped to fill an 8x16384 canvas took 6.6 GB to scale whole to
    16384x16384. Width first is the whole resize to the bit; height first differs by
    float rounding (up to 2.4e-7; more in the colour of a nearly transparent RGBA
    pixel, which is divided by its alpha).
    """
    if image.shape[2] == width and image.shape[1] == height:
        return image if region is None else image[:, region[0], region[1]]
    t = at_least_float32(image)  # no half-precision antialias on the CPU
    rgba = t.shape[-1] == 4
    if rgba:
        t = premultiplied(t)
    t = t.movedim(-1, 1)
    if region is None:
        t = _resample(t, height, width)
    else:
        rows, cols = region
        kept_h = len(range(height)[rows]) / height
        kept_w = len(range(width)[cols]) / width
        if kept_w <= kept_h:
            t = _resample(t, t.shape[2], width)[..., cols]
            t = _resample(t, height, t.shape[3])[:, :, rows]
        else:
            t = _resample(t, height, t.shape[3])[:, :, rows]
            t = _resample(t, t.shape[2], width)[..., cols]
    t = t.movedim(1, -1)
    if rgba:
        t = unpremultiplied(t)
    return t.clamp(0.0, 1.0).to(image.dtype)


def _resample(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B,C,h,w]`` to ``height x width``: bicubic with antialiasing (a no-op at its size)."""
    if t.shape[2:] == (height, width):
        return t
    if width == 1 and t.shape[2] != height:
        # torch's antialiased bicubic (2.13, CPU) gives an output 1 px wide its first
        # row's value all the way down: across first, then down as a row, which it
        # resamples right (the same values as through a 3 px wide copy, to the bit)
        t = _resample(t, t.shape[2], 1)
        return _resample(t.transpose(2, 3), 1, height).transpose(2, 3)
    return F.interpolate(
        t, size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )


def known_region(plan: CanvasPlan) -> tuple[slice, slice, slice, slice]:
    """Canvas and source slices (ys, xs, src_ys, src_xs) of the visible image part."""
    x0, y0 = max(0, plan.x), max(0, plan.y)
    x1 = min(plan.canvas_w, plan.x + plan.scaled_w)
    y1 = min(plan.canvas_h, plan.y + plan.scaled_h)
    return (
        slice(y0, y1),
        slice(x0, x1),
        slice(y0 - plan.y, y1 - plan.y),
        slice(x0 - plan.x, x1 - plan.x),
    )


def outpaint_mask(plan: CanvasPlan, overlap: int = 0, device=None) -> torch.Tensor:
    """``[1,H,W]`` mask: 1 on new area, plus a linear ramp ``overlap`` px into the image.

    The ramp only runs in from sides that were grown, so a crop edge stays hard, and no
    deeper than the side's new strip is wide: the 2 px a side gains from rounding to
    ``multiple_of`` do not hand 64 px of the photo along it to the model.
    """
    if not is_whole(overlap) or overlap < 0:
        raise UncropError(f"overlap: expected a whole number of px, 0 or more, got {overlap!r}.")
    h, w = plan.canvas_h, plan.canvas_w
    mask = torch.ones((1, h, w), device=device)
    ys, xs, _, _ = known_region(plan)
    mask[:, ys, xs] = 0.0
    if overlap <= 0 or not plan.adds_area:
        return mask
    yy = torch.arange(ys.start, ys.stop, device=device, dtype=torch.float32).view(-1, 1)
    xx = torch.arange(xs.start, xs.stop, device=device, dtype=torch.float32).view(1, -1)
    ramp = torch.zeros((ys.stop - ys.start, xs.stop - xs.start), device=device)
    # Each grown side's distance, in px from 1 at the first image pixel, and its strip.
    for dist, margin in (
        (xx - xs.start + 1, plan.left),
        (xs.stop - xx, plan.right),
        (yy - ys.start + 1, plan.top),
        (ys.stop - yy, plan.bottom),
    ):
        if margin > 0:
            depth = min(overlap, margin)
            ramp = torch.maximum(ramp, (1.0 - dist / (depth + 1)).clamp(0, 1))
    mask[:, ys, xs] = ramp
    return mask


def expand_canvas(
    image: torch.Tensor, plan: CanvasPlan, overlap: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place ``image`` on the plan's canvas. New area is left at 0 (fill it next).

    Where it is not resized the image is placed as it came, values a resampler left past
    0..1 included (NaN, or values on another scale, are refused). Returns
    ``(canvas [B,H,W,C], mask [B,H,W])`` with 1 = area to generate.
    """
    image = check_image(image, values=False)
    check_image(image)
    if image.shape[2] != plan.source_w or image.shape[1] != plan.source_h:
        raise UncropError(
            f"image: the canvas plan was made for {plan.source_w}x{plan.source_h}, "
            f"got {image.shape[2]}x{image.shape[1]}."
        )
    ys, xs, sys_, sxs = known_region(plan)
    visible = resize_image(image, plan.scaled_w, plan.scaled_h, (sys_, sxs))
    b, c = image.shape[0], image.shape[-1]
    canvas = torch.zeros(
        (b, plan.canvas_h, plan.canvas_w, c), device=image.device, dtype=image.dtype
    )
    canvas[:, ys, xs] = visible
    mask = outpaint_mask(plan, overlap, device=image.device).to(image.dtype).expand(b, -1, -1)
    return canvas, mask.contiguous()
