"""Checking IMAGE and MASK inputs and reconciling them with each other.

This is the only place where shapes are normalised and where a mask is matched
to an image; every other function in ``core`` can assume the result. Rules:

- IMAGE ``[H,W,C]`` gains a batch dimension; C must be 1, 3 or 4.
- MASK ``[H,W]`` gains a batch dimension; ``[B,1,H,W]`` and ``[B,H,W,1]`` lose the 1.
- Batches: a single mask is broadcast over a batch of images, a single image over
  a batch of masks; any other difference is refused, naming both shapes.
- Sizes: a mask of another size but the same aspect ratio is resized to the
  image (bilinear) with a warning; a different aspect ratio is refused, unless
  the mask has one value (LoadImage's blank 64x64 one), which fits any size.
- Values are clamped to 0..1 (by at most ``IMAGE_SLACK``: one further out is on
  another scale and refused); NaN or infinity is refused. A caller that reads
  only part of an image (the diffusion sampler's windows) may check the shape
  alone (``values=False``) and check the part it reads: the rest it returns as
  it came, so no pass over a 4K photo is spent on pixels nothing touches.
"""

from __future__ import annotations

import logging
import math
import numbers

import torch
import torch.nn.functional as F

from .errors import UncropError

log = logging.getLogger(__name__)

ASPECT_TOLERANCE = 0.01


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


# An IMAGE or MASK reaching this far past 0..1 is on another scale (0..255, -1..1, linear
# HDR), not a resampler's overshoot: clamped, it would come out a white or black frame
# (a mask: every soft value 1).
IMAGE_SLACK = 0.5


def _finite_in_unit_range(t: torch.Tensor, name: str, kind: str) -> torch.Tensor:
    """Refuse NaN/inf, and values more than ``IMAGE_SLACK`` outside 0..1 (``kind``, IMAGE
    or MASK, names the type in the message); clamp to 0..1. One pass over the data (NaN
    and inf propagate through min/max, so the extremes alone tell)."""
    lo, hi = torch.aminmax(t)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UncropError(f"{name}: contains NaN or infinite values.")
    if lo < -IMAGE_SLACK or hi > 1 + IMAGE_SLACK:
        raise UncropError(
            f"{name}: values run from {lo:.4g} to {hi:.4g}, but a {kind} holds floats in 0..1; "
            "divide a 0..255 one by 255, map a -1..1 one with (x + 1) / 2."
        )
    return t.clamp(0.0, 1.0) if (lo < 0 or hi > 1) else t


def check_image(image: torch.Tensor, name: str = "image", values: bool = True) -> torch.Tensor:
    """Return ``image`` as a float ``[B,H,W,C]`` tensor in 0..1 or raise UncropError
    (``values=False``: the shape and dtype only)."""
    if not isinstance(image, torch.Tensor):
        raise UncropError(f"{name}: expected an IMAGE tensor, got {type(image).__name__}.")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise UncropError(
            f"{name}: expected an IMAGE of shape [batch, height, width, channels] with 1, 3 "
            f"or 4 channels, got {_shape(image)}."
        )
    if image.shape[0] == 0 or image.shape[1] == 0 or image.shape[2] == 0:
        raise UncropError(f"{name}: the image is empty, shape {_shape(image)}.")
    if not image.is_floating_point():
        raise UncropError(f"{name}: expected float values in 0..1, got dtype {image.dtype}.")
    image = image.detach()  # pixels in, pixels out: nothing here is differentiated
    return _finite_in_unit_range(image, name, "IMAGE") if values else image


def check_mask(
    mask: torch.Tensor, name: str = "mask", size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Return ``mask`` as a float ``[B,H,W]`` tensor in 0..1 or raise UncropError.

    ``size``, the image's ``(H, W)``, settles a 4-D mask that could be either layout
    (``[B,1,W,1]``: a row as ``[B,H,W,1]``, a column as ``[B,1,H,W]``)."""
    if not isinstance(mask, torch.Tensor):
        raise UncropError(f"{name}: expected a MASK tensor, got {type(mask).__name__}.")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    elif mask.ndim == 4 and mask.shape[-1] == 1 and (mask.shape[1] != 1 or mask.shape[1:3] == size):
        mask = mask[..., 0]
    elif mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3 or 0 in mask.shape:
        raise UncropError(
            f"{name}: expected a MASK of shape [batch, height, width], got {_shape(mask)}."
        )
    if mask.is_complex():
        raise UncropError(f"{name}: expected real values in 0..1, got dtype {mask.dtype}.")
    mask = mask.detach()
    if not mask.is_floating_point():
        if mask.dtype != torch.bool and bool((mask > 1).any()):  # 0..255, say: not clamped
            raise UncropError(
                f"{name}: expected float values in 0..1 (or a 0/1 mask), got dtype {mask.dtype} "
                f"with values up to {int(mask.max())}; divide it by its maximum first."
            )
        mask = mask.float()
    return _finite_in_unit_range(mask, name, "MASK")


def match_mask(
    image: torch.Tensor,
    mask: torch.Tensor,
    image_name: str = "image",
    mask_name: str = "mask",
    image_values: bool = True,
    marks_fill: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both inputs and return ``(image, mask)`` with equal batch and size.

    The mask ends up on the image's device and dtype; ``image_values`` as
    :func:`check_image`'s ``values``. A mask of another size is resized; when
    shrunk, each pixel takes the largest value it covers if the mask ``marks_fill``
    (so a stroke thinner than the scale survives), else the smallest (a mask of
    allowed pixels allows no pixel that was partly outside it).
    """
    image = check_image(image, image_name, image_values)
    mask = check_mask(mask, mask_name, size=tuple(image.shape[1:3])).to(device=image.device)
    b_img, h, w = image.shape[:3]
    b_mask, mh, mw = mask.shape
    if b_img != b_mask and 1 not in (b_img, b_mask):
        raise UncropError(
            f"{mask_name} batch of {b_mask} does not match {image_name} batch of {b_img}: "
            f"{mask_name} {_shape(mask)} vs {image_name} {_shape(image)}. Use one mask for "
            "all images or one mask per image."
        )
    if (mh, mw) != (h, w):  # on the masks as given: one mask for a batch is resized once
        corner = mask[:, :1, :1]
        if bool((mask == corner).all()):  # one value per mask: the same at any size
            # LoadImage gives a blank 64x64 mask for an image with no alpha channel
            log.warning(
                "%s is %dx%d with one value; taken at the image size %dx%d.",
                mask_name, mw, mh, w, h,
            )  # fmt: skip
            mask = corner.expand(b_mask, h, w)
        elif abs(mw / mh - w / h) > ASPECT_TOLERANCE * (w / h):
            raise UncropError(
                f"{mask_name} size {mw}x{mh} has a different aspect ratio than {image_name} "
                f"size {w}x{h}; resize or crop the mask to match the image."
            )
        else:
            log.warning("Resizing %s from %dx%d to the image size %dx%d.", mask_name, mw, mh, w, h)
            mask = resize_mask(mask, h, w, marks_fill)
    if b_mask < b_img:
        mask = mask.expand(b_img, h, w)
    elif b_img < b_mask:
        image = image.expand(b_mask, *image.shape[1:])
    return image, _keeping_holes(mask, image.dtype).contiguous()


def _keeping_holes(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``mask`` in ``dtype``, a value under ``HOLE_LEVEL`` still under it there
    (float16 rounds 0.00392 up to its 1/255, which made a known pixel hole)."""
    out = mask.to(dtype)
    if out.dtype == mask.dtype:
        return out
    level = torch.tensor(HOLE_LEVEL, dtype=dtype, device=mask.device)
    under = torch.nextafter(level, torch.zeros_like(level))
    return torch.where(mask < HOLE_LEVEL, out.clamp_max(under), out)


SEED_LIMIT = 2**64  # seeds are 0 .. 2**64 - 1, as in ComfyUI


def is_whole(value: object) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` as an int, if it is one from 0 to ``SEED_LIMIT - 1``."""
    if not is_whole(seed) or not 0 <= seed < SEED_LIMIT:
        raise UncropError(f"{name}: expected a whole number from 0 to 2**64 - 1, got {seed!r}.")
    return int(seed)


def generator(seed: int) -> torch.Generator:
    """A CPU random generator for ``seed``; seeds made by adding to one (one per image
    or window) wrap around at ``SEED_LIMIT``."""
    return torch.Generator(device="cpu").manual_seed(int(seed) % SEED_LIMIT)


def resize_mask(mask: torch.Tensor, h: int, w: int, marks_fill: bool = True) -> torch.Tensor:
    """``[B,mh,mw]`` to ``[B,h,w]``: bilinear up, the max (or min) of the covered pixels down."""
    m = mask.unsqueeze(1)
    if not marks_fill:
        m = 1 - m
    if m.shape[-2] > h or m.shape[-1] > w:
        size = (min(h, m.shape[-2]), min(w, m.shape[-1]))
        # MPS pools only sizes that divide evenly (and some wrongly): on the CPU there.
        on = torch.device("cpu") if m.device.type == "mps" else m.device
        m = F.adaptive_max_pool2d(m.to(on), size).to(m.device)
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    if not marks_fill:
        m = 1 - m
    return m[:, 0].clamp(0.0, 1.0)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16 or bfloat16 (sums over a photo overflow them, and
    some CPU kernels lack them), else as it is; cast results back to the input's dtype."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# A mask value under one 8-bit step leaves its pixel known: blended by that weight, a
# fill moves it by less than a level. Masks from a sigmoid or a wide feather are not
# exactly 0 anywhere; counted as hole, their tail left nothing known to fill from.
HOLE_LEVEL = 1 / 255

# What a model treats as hole: diffusers binarises its mask at 0.5, and softer pixels stay
# context. The pre-fill replaces, and the captioner hides, the same pixels.
MODEL_HOLE = 0.5

# Below this alpha a pixel's colour is not divided out of a premultiplied one (resized,
# filled or blended): it is invisible, and black.
ALPHA_SEEN = 1e-4


def premultiplied(rgba: torch.Tensor) -> torch.Tensor:
    """``[...,4]`` with the colours weighted by alpha, for resampling, filling or blending
    without the colour hidden under transparent pixels (often black) bleeding in."""
    return torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], dim=-1)


def unpremultiplied(rgba: torch.Tensor) -> torch.Tensor:
    """:func:`premultiplied` undone: colours divided by the alpha as it came out (a
    resampler's overshoot past 1 cancels out) and clamped to 0..1, black where invisible."""
    alpha = rgba[..., 3:]
    rgb = (rgba[..., :3] / alpha.clamp_min(ALPHA_SEEN)).clamp(0.0, 1.0)
    return torch.cat([torch.where(alpha > ALPHA_SEEN, rgb, 0.0), alpha], dim=-1)


def hole_of(mask: torch.Tensor) -> torch.Tensor:
    """The pixels of ``mask`` to fill (bool): at least ``HOLE_LEVEL``."""
    return mask >= HOLE_LEVEL


def is_empty(mask: torch.Tensor) -> bool:
    """True when nothing is to be filled."""
    return not bool(hole_of(mask).any())
