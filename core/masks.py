"""Mask operations on ``[B,H,W]`` float masks (1 = area to fill).

Morphology and blurring run in torch on the mask's device, batched. Growing uses
an octagon built from line dilations that cost O(log radius) passes each, so a
radius of 100 px on a 4K mask is a few dozen whole-frame ops rather than 100.
Topology (filling holes, removing specks) needs connected components, which
scipy labels in linear time on the CPU; only those two ops leave the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .errors import UncropError
from .inputs import at_least_float32, hole_of
from .progress import ProgressHook, or_null

# Limits of refine_mask (and the Refine Mask node): wider than any edge needs, and
# small enough that a typo cannot run for minutes or exhaust memory.
MAX_GROW = 1024
MAX_FEATHER = 512.0
# Octagon proportions: square half-width a plus diamond radius d, a + d = r. The
# continuous optimum is d = (2 - sqrt 2) r; on the pixel lattice, d = 0.68 r + 0.3
# minimises the pixels that differ from a true disc for radii 1..16 (measured).
_DIAMOND_SHARE = 0.68
_DIAMOND_OFFSET = 0.3


def _shift_max(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``max(x[y, x], x[y + dy, x + dx])`` with nothing beyond the border."""
    h, w = x.shape[-2:]
    out = x.clone()
    if abs(dy) >= h or abs(dx) >= w:
        return out
    y0, y1 = max(0, -dy), min(h, h - dy)
    x0, x1 = max(0, -dx), min(w, w - dx)
    region = out[..., y0:y1, x0:x1]
    torch.maximum(region, x[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx], out=region)
    return out


def _line_dilate(x: torch.Tensor, half: int, dy: int, dx: int, beyond: float = 0) -> torch.Tensor:
    """Max over the segment of offsets ``-half..half`` along direction (dy, dx).

    Windows of doubling length are built by shifting the partial result by its own
    length, then two overlapping power-of-two windows cover any length exactly.
    The frame is padded by ``half`` with ``beyond`` first so windows that start
    beyond the border still exist.
    """
    if half <= 0:
        return x
    h, w = x.shape[-2:]
    py, px = half * abs(dy), half * abs(dx)
    window = F.pad(x, (px, px, py, py), value=beyond)
    length = 2 * half + 1
    size = 1
    while size * 2 <= length:
        window = _shift_max(window, dy * size, dx * size)
        size *= 2
    if size < length:
        rest = length - size
        window = _shift_max(window, dy * rest, dx * rest)
    # window[p] covers offsets 0..length-1 from p; the centred value for pixel q
    # sits at p = q - half * (dy, dx), i.e. at padded index q + pad - half * (dy, dx).
    y0 = py - half * dy
    x0 = px - half * dx
    return window[..., y0 : y0 + h, x0 : x0 + w]


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x[y + dy, x + dx]``, zero beyond the border."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    y0, y1 = max(0, -dy), min(h, h - dy)
    x0, x1 = max(0, -dx), min(w, w - dx)
    out[..., y0:y1, x0:x1] = x[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


def _cross(x: torch.Tensor) -> torch.Tensor:
    out = x
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        out = torch.maximum(out, _shift(x, dy, dx))
    return out


def _diamond(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate by ``|dx| + |dy| <= radius``."""
    if radius <= 0:
        return x
    # Two diagonal segments give the even-parity points of a diamond; a cross
    # fills the odd ones and adds one to the radius.
    crosses = 1 if radius % 2 == 1 else 2
    half = (radius - crosses) // 2
    x = _line_dilate(x, half, 1, 1)
    x = _line_dilate(x, half, 1, -1)
    for _ in range(crosses):
        x = _cross(x)
    return x


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey dilation of ``[B,H,W]`` by a near-disc octagon of ``radius`` px."""
    if radius <= 0:
        return mask
    d = min(radius, max(1, int(_DIAMOND_SHARE * radius + _DIAMOND_OFFSET + 0.5)))
    a = radius - d
    # The passes run on the frame padded by the radius: a pixel's reach may go through
    # points beyond the frame (on a 1 px high strip the diagonals leave it at once),
    # and a pass that cropped them would cut the octagon short.
    r = radius
    out = _diamond(F.pad(mask, (r, r, r, r)), d)
    out = _line_dilate(out, a, 0, 1)
    return _line_dilate(out, a, 1, 0)[..., r:-r, r:-r]


def square_max(x: torch.Tensor, radius: int, beyond: float = 0) -> torch.Tensor:
    """The largest value in the ``(2r+1)²`` square around each pixel of ``[...,H,W]``,
    pixels beyond the frame being ``beyond``: two line dilations, log r passes each."""
    return _line_dilate(_line_dilate(x, radius, 0, 1, beyond), radius, 1, 0, beyond)


def _square_any(x: torch.Tensor, radius: int, beyond: bool) -> torch.Tensor:
    """Whether the ``(2r+1)²`` square around each pixel of bool ``[H,W]`` ``x`` holds a
    True, pixels beyond the frame being ``beyond`` (on bytes)."""
    return square_max(x.to(torch.uint8)[None], radius, int(beyond))[0] > 0


def dilate_square(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a bool ``[H,W]`` mask by a ``(2r+1)²`` square; nothing beyond the frame."""
    if radius <= 0:
        return mask
    return _square_any(mask, radius, False)


def erode_square(mask: torch.Tensor, radius: int, beyond: bool = False) -> torch.Tensor:
    """Erode a bool ``[H,W]`` mask by a ``(2r+1)²`` square, counting pixels beyond the
    frame as in the mask when ``beyond``."""
    if radius <= 0:
        return mask
    return ~_square_any(~mask, radius, not beyond)


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow the area to fill by ``pixels`` (negative shrinks it).

    Shrinking treats everything beyond the image border as masked, so a mask that
    touches the border (an outpaint band) is not eaten from that side.
    """
    if pixels > 0:
        return dilate(mask, pixels)
    if pixels < 0:
        return 1.0 - dilate(1.0 - mask, -pixels)
    return mask


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def box_of(flags: torch.Tensor) -> tuple[slice, slice] | None:
    """``(rows, cols)`` slices of the bounding box of the set pixels of ``flags [H,W]``
    (bool), or None when none is set."""
    rows = torch.nonzero(flags.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(flags.any(dim=0)).flatten()
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Mirror indices into 0..n-1 (edge pixel not repeated), for any distance."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """``x`` ``[B,C,H,W]`` (or ``[B,H,W]``) grown by reflection, however far: ``F.pad``'s
    reflection (7x faster than a gather) stops short of the frame's size."""
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    if top or bottom:
        x = x.index_select(-2, reflect_index(torch.arange(-top, h + bottom, device=x.device), h))
    if left or right:
        x = x.index_select(-1, reflect_index(torch.arange(-left, w + right, device=x.device), w))
    return x


def _convolve_axis(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D convolution along ``dim`` as a weighted sum of shifted views.

    For the short kernels used here this beats a single-channel conv2d on the CPU
    by several times and is just as fast on a GPU. Borders are reflected, however far
    the kernel reaches past them (a feather as wide as the frame jumped about when
    the border switched to repeating its last pixel).
    """
    r = (kernel.numel() - 1) // 2
    n = x.shape[dim]
    padded = _reflect_pad(x, *((0, 0, r, r) if dim == -1 else (r, r, 0, 0)))
    out = padded.narrow(dim, 0, n) * kernel[0]
    for i in range(1, kernel.numel()):
        out.add_(padded.narrow(dim, i, n), alpha=float(kernel[i]))
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of ``[B,H,W]`` or ``[B,C,H,W]`` with reflected borders.

    Wide blurs run on an area-downscaled copy (the result is smooth at that scale
    anyway), which keeps a 100 px feather on a 4K mask well under a second.
    """
    if sigma <= 0:
        return x
    squeeze = x.ndim == 3
    t = x.unsqueeze(1) if squeeze else x
    h, w = t.shape[-2:]
    factor = int(sigma // 4) if sigma >= 8 else 1
    factor = min(factor, max(1, min(h, w) // 8))
    if factor > 1:
        # The frame with reflected margins of the kernel's reach, in whole cells, is
        # blurred small and cropped after, so its edges mirror about the edge pixel as at
        # full size (mirrored at the small size, about a cell's centre, an 8 px strip on
        # the border lost a third of a 120 px feather). The last cells are completed
        # the same way, so each cell's centre scales back to where it was.
        reach = math.ceil(3 * sigma / factor) * factor
        top, left = reach + (-h) % factor // 2, reach + (-w) % factor // 2
        bottom, right = 2 * reach + (-h) % factor - top, 2 * reach + (-w) % factor - left
        small = F.avg_pool2d(_reflect_pad(t, top, bottom, left, right), factor)
        small = gaussian_blur(small, sigma / factor)
        out = F.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
        out = out[..., top : top + h, left : left + w]
    else:
        k = _gaussian_kernel(sigma, t.device, t.dtype)
        out = _convolve_axis(_convolve_axis(t, k, -1), k, -2)
    return out[:, 0] if squeeze else out


# A feathered value this close to 1 is 1: the kernel's float32 weights sum to a little
# under 1, so the inside of a mask came out 0.9999998 (a threshold at 1 found nothing,
# and a composite took not quite all of the generated image).
FEATHER_SNAP = 1e-6


def feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """Soften the mask edge so it ramps over about ``pixels`` px (sigma = pixels / 3);
    computed in float32 at least (half precision let the inside sag by a level)."""
    if pixels <= 0:
        return mask
    out = gaussian_blur(at_least_float32(mask), pixels / 3.0).clamp_(0.0, 1.0)
    return torch.where(out >= 1 - FEATHER_SNAP, 1.0, out).to(mask.dtype)


def threshold(mask: torch.Tensor, level: float) -> torch.Tensor:
    """1 where ``mask >= level``, else 0."""
    return (mask >= level).to(mask.dtype)


def _per_item(mask: torch.Tensor, fn, above: float = 0.5) -> torch.Tensor:
    binary = (mask > above).cpu().numpy()
    out = np.stack([fn(m) for m in binary])
    return torch.from_numpy(out).to(device=mask.device, dtype=mask.dtype)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Also mark unmasked regions enclosed entirely by the mask (above 0.5); the rest,
    a soft edge included, stays as it is."""
    holes = _per_item(mask, lambda m: ndimage.binary_fill_holes(m) & ~m)
    return torch.maximum(mask, holes)


def label_islands(m: np.ndarray) -> tuple[np.ndarray, int]:
    """The 8-connected islands of a bool array: labels (1..count, 0 off them) and count."""
    return ndimage.label(m, structure=np.ones((3, 3), dtype=bool))


def remove_specks(mask: torch.Tensor, min_area: int) -> torch.Tensor:
    """Drop masked islands smaller than ``min_area`` px (8-connected).

    An island is every hole pixel (:func:`~.inputs.hole_of`, at least 1/255) that
    touches it, so a soft edge stays with its core and counts towards its area, and a
    sigmoid's faint tail does not join every speck into one.
    """
    if min_area <= 1:
        return mask

    def keep_large(m: np.ndarray) -> np.ndarray:
        labels, count = label_islands(m)
        if count == 0:
            return m
        areas = np.bincount(labels.ravel())
        keep = areas >= min_area
        keep[0] = False
        return keep[labels]

    keep = _per_item(hole_of(mask).to(mask.dtype), keep_large)
    return mask * keep


def refine_mask(
    mask: torch.Tensor,
    *,
    grow_px: int = 0,
    feather_px: float = 0.0,
    fill_holes_: bool = False,
    min_speck_area: int = 0,
    threshold_level: float = 0.0,
    progress: ProgressHook | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Clean up a mask in a fixed order: threshold, specks, holes, grow, feather.

    Image by image: ``progress`` is told after each, and may cancel before each step
    (a wide grow over a batch of 4K masks takes seconds on a CPU). Each mask is refined
    on ``device`` (default: where ``mask`` is) and comes back to ``mask``'s device."""
    if not 0 <= threshold_level <= 1:  # NaN too
        raise UncropError(f"threshold: expected a value in 0..1, got {threshold_level}.")
    if not 0 <= feather_px <= MAX_FEATHER:
        raise UncropError(f"feather: expected 0 to {MAX_FEATHER:g} px, got {feather_px}.")
    if not -MAX_GROW <= grow_px <= MAX_GROW:
        raise UncropError(f"grow: expected -{MAX_GROW} to {MAX_GROW} px, got {grow_px}.")
    if not mask.is_floating_point():  # a feather or shrink of 0/1 values is no use
        mask = mask.float()
    if mask.shape[0] == 0:
        return mask.clone()
    steps = []
    if threshold_level > 0:
        steps.append(lambda m: threshold(m, threshold_level))
    if min_speck_area > 1:
        steps.append(lambda m: remove_specks(m, min_speck_area))
    if fill_holes_:
        steps.append(fill_holes)
    steps += [lambda m: grow(m, int(grow_px)), lambda m: feather(m, feather_px)]
    hook = or_null(progress)
    out = []
    for i in range(mask.shape[0]):
        m = mask[i : i + 1].to(device)
        for step in steps:
            hook.check_interrupted()
            m = step(m)
        out.append(m.to(mask.device))
        hook.update(i + 1, mask.shape[0])
    return torch.cat(out) if len(out) != 1 else out[0]
