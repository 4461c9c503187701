"""Model-free filling of the masked area of an IMAGE batch.

Every method has the same signature, ``method(image, hole, seed=..., progress=...,
**options)`` with one image ``[1,H,W,C]`` and its ``hole [1,H,W]`` boolean (True =
unknown, neither empty nor the whole frame), and returns a new image whose known
pixels are untouched; :func:`fill` calls it once per image of a batch, with that
image's part of the progress hook. :data:`FILL_METHODS` is the single table the
Fill node, Expand Canvas, the diffusion pre-fill and the CLI choose from;
:func:`fill` is the entry point that checks inputs and dispatches.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable

import torch

from .composite import match_channels
from .errors import UncropError
from .inputs import (
    at_least_float32,
    check_seed,
    generator,
    hole_of,
    is_empty,
    match_mask,
    premultiplied,
    unpremultiplied,
)
from .masks import box_of, reflect_index
from .patchmatch import check_patch_size, patch_fill
from .pattern import estimate_period, extend_pattern
from .progress import Part, ProgressHook, or_null
from .smooth import smooth_fill

log = logging.getLogger(__name__)

# The defaults of the nodes' and the command line's fill options.
DEFAULT_COLOR = "#808080"
DEFAULT_PATCH_SIZE = 7

FillMethod = Callable[..., torch.Tensor]


def _bbox(hole: torch.Tensor, margin: int) -> tuple[slice, slice]:
    """Bounding box of all holes in the batch, grown by ``margin`` and clipped."""
    any_hole = hole.any(dim=0)
    rows, cols = box_of(any_hole)
    h, w = any_hole.shape
    y0, y1 = max(0, rows.start - margin), min(h, rows.stop + margin)
    x0, x1 = max(0, cols.start - margin), min(w, cols.stop + margin)
    return slice(y0, y1), slice(x0, x1)


def nearest_known(hole: torch.Tensor) -> torch.Tensor:
    """For every pixel, the ``(y, x)`` of the nearest known pixel: ``[B,H,W,2]`` long.

    On the CPU, SciPy's exact Euclidean distance transform (one pass over the
    frame: 1.5 s for a 4096 px outpaint canvas, where jump flooding took 41 s on
    one thread); on a GPU, jump flooding (:func:`_jump_flood`), which is exact but
    for rare layouts of sparse known pixels, where it takes one a fraction of a
    pixel farther than the nearest. Between pixels equally near the two may pick
    differently.
    Images (batch items) with no known pixel at all keep pointing at themselves.
    """
    if hole.device.type != "cpu":
        return _jump_flood(hole)
    from scipy.ndimage import distance_transform_edt

    b, h, w = hole.shape
    out = torch.empty(b, h, w, 2, dtype=torch.long)
    for i, item in enumerate(hole.numpy()):
        if item.all():
            out[i, ..., 0] = torch.arange(h).view(h, 1)
            out[i, ..., 1] = torch.arange(w).view(1, w)
            continue
        idx = distance_transform_edt(item, return_distances=False, return_indices=True)
        out[i] = torch.from_numpy(idx).movedim(0, -1)
    return out


def _jump_flood(hole: torch.Tensor) -> torch.Tensor:
    """:func:`nearest_known` by jump flooding (Rong & Tan 2006): log2(size) passes,
    each looking 8 ways at a halving distance, plus passes at distances 2 and 1 to
    fix most of its misses (JFA+2: over 700 random sparse masks, 9 with a pixel up to
    0.19 px farther than the nearest with one extra pass, 1 with 0.07 px with two).
    Each pass is dense (``torch.where``, no boolean indexing), so it never waits on
    the GPU to count pixels."""
    b, h, w = hole.shape
    dev = hole.device
    yy = torch.arange(h, device=dev, dtype=torch.int32).view(1, h, 1).expand(b, h, w)
    xx = torch.arange(w, device=dev, dtype=torch.int32).view(1, 1, w).expand(b, h, w)
    big = torch.iinfo(torch.int32).max // 4
    sy = torch.where(hole, big, yy)
    sx = torch.where(hole, big, xx)
    best = (sy - yy).float() ** 2 + (sx - xx).float() ** 2
    step = 1 << max(0, (max(h, w) - 1).bit_length() - 1)
    steps = []
    while step >= 1:
        steps.append(step)
        step //= 2
    steps += [2, 1]
    for k in steps:
        for dy in (-k, 0, k):
            for dx in (-k, 0, k):
                if dy == 0 and dx == 0:
                    continue
                y0, y1 = max(0, -dy), min(h, h - dy)
                x0, x1 = max(0, -dx), min(w, w - dx)
                if y0 >= y1 or x0 >= x1:
                    continue
                cy = sy[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
                cx = sx[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
                d = (cy - yy[:, y0:y1, x0:x1]).float() ** 2 + (
                    cx - xx[:, y0:y1, x0:x1]
                ).float() ** 2
                region = best[:, y0:y1, x0:x1]
                better = d < region
                region.copy_(torch.where(better, d, region))
                ty, tx = sy[:, y0:y1, x0:x1], sx[:, y0:y1, x0:x1]
                ty.copy_(torch.where(better, cy, ty))
                tx.copy_(torch.where(better, cx, tx))
    unresolved = sy == big
    sy = torch.where(unresolved, yy, sy)
    sx = torch.where(unresolved, xx, sx)
    return torch.stack((sy, sx), dim=-1).long()


def _gather(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    b, h, w, c = image.shape
    flat = image.reshape(b, h * w, c)
    index = (ys * w + xs).reshape(b, -1, 1).expand(-1, -1, c)
    return torch.gather(flat, 1, index).reshape(b, *ys.shape[1:], c)


def _in_crop(image: torch.Tensor, hole: torch.Tensor, margin: int, fn) -> torch.Tensor:
    """Run ``fn`` on the holes' bounding box only and paste the result back."""
    ys, xs = _bbox(hole, margin)
    out = image.clone()
    out[:, ys, xs] = fn(image[:, ys, xs].contiguous(), hole[:, ys, xs].contiguous())
    return out


def _known_rectangle(hole: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((y0, y1), (x0, x1))`` if the known pixels of ``hole [H,W]`` are exactly one
    rectangle, else None."""
    known = ~hole
    rows = torch.nonzero(known.any(1)).flatten()
    cols = torch.nonzero(known.any(0)).flatten()
    if rows.numel() == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return ((y0, y1), (x0, x1)) if bool(known[y0:y1, x0:x1].all()) else None


def _pad_known_rectangle(
    image: torch.Tensor, hole: torch.Tensor, index: Callable[[torch.Tensor, int], torch.Tensor]
) -> torch.Tensor | None:
    """Where the known pixels of one image are exactly a rectangle, pad that
    rectangle out to the frame, ``index(i, n)`` mapping each axis's offsets from
    the rectangle's start into ``0..n-1``; None for any other hole.

    Everything outside the rectangle is hole, so the padded rectangle is the whole
    result: two gathers, columns first (rows are whole-row copies), on the
    rectangle's rows only.
    """
    rect = _known_rectangle(hole[0])
    if rect is None:
        return None
    (y0, y1), (x0, x1) = rect
    ty = index(torch.arange(image.shape[1], device=image.device) - y0, y1 - y0)
    tx = index(torch.arange(image.shape[2], device=image.device) - x0, x1 - x0)
    known = image[0, y0:y1, x0:x1]
    return known.index_select(1, tx).index_select(0, ty).unsqueeze(0)


def fill_edge(image: torch.Tensor, hole: torch.Tensor, **_: object) -> torch.Tensor:
    """Each unknown pixel takes the colour of the nearest known pixel.

    Where the known pixels are one rectangle (any outpaint canvas), the nearest is
    the pixel's coordinates clamped into it (replicate padding): no distance
    transform, which took 25 s and 5 GiB for a 4096 px image on an 8192 px canvas.
    """
    padded = _pad_known_rectangle(image, hole, lambda i, n: i.clamp(0, n - 1))
    if padded is not None:
        return padded

    def run(img: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        near = nearest_known(h)
        return torch.where(h.unsqueeze(-1), _gather(img, near[..., 0], near[..., 1]), img)

    return _in_crop(image, hole, 1, run)


MIRROR_BOUNCES = 16  # reflections a pixel may take before it falls back to its edge colour


def fill_mirror(image: torch.Tensor, hole: torch.Tensor, **_: object) -> torch.Tensor:
    """Reflect the known image across the nearest border of the hole.

    An unknown pixel ``p`` whose nearest known pixel is ``q`` takes the colour at
    ``t = 2q - p`` (mirrored again at the frame edge). Where ``t`` lies in the hole
    too (a band wider than the image beside it), ``t`` is reflected the same way
    across its own nearest known pixel, up to :data:`MIRROR_BOUNCES` times; a pixel
    still in the hole then takes ``q``'s colour. On an outpaint canvas this is
    reflection padding, repeated as far as the band goes: where the known pixels
    are one rectangle (any outpaint canvas), each axis is reflected into it
    directly, which is exactly numpy's ``reflect`` padding however wide the band.
    """
    _b, h, w, _c = image.shape  # one image: fill() calls each method per batch item
    padded = _pad_known_rectangle(image, hole, reflect_index)
    if padded is not None:
        return padded
    ys, xs = _bbox(hole, 1)
    crop = hole[:, ys, xs].contiguous()
    near = nearest_known(crop)[0]  # [ch, cw, 2], crop coordinates
    cw = xs.stop - xs.start
    near_y = near[..., 0].flatten() + ys.start  # frame coordinates, by crop index
    near_x = near[..., 1].flatten() + xs.start
    at = torch.nonzero(crop[0].flatten()).squeeze(1)  # the hole's pixels, by crop index
    start = at  # each pixel's own place, for the edge colour if it never leaves the hole
    py, px = at // cw + ys.start, at % cw + xs.start
    ty, tx = py.clone(), px.clone()
    pending = torch.arange(at.numel(), device=image.device)  # those whose t is in the hole
    for _ in range(MIRROR_BOUNCES):
        ny = reflect_index(2 * near_y[at] - ty[pending], h)
        nx = reflect_index(2 * near_x[at] - tx[pending], w)
        ty[pending], tx[pending] = ny, nx
        again = hole[0, ny, nx]
        pending, ny, nx = pending[again], ny[again], nx[again]
        if pending.numel() == 0:
            break
        at = (ny - ys.start) * cw + (nx - xs.start)  # a t in the hole lies in the crop
    edge = start[pending]  # still in the hole: the nearest known pixel's colour
    ty[pending], tx[pending] = near_y[edge], near_x[edge]
    out = image.clone()
    out[0, py, px] = image[0, ty, tx]
    return out


def fill_smooth(
    image: torch.Tensor,
    hole: torch.Tensor,
    tension: float | None = None,
    progress: ProgressHook | None = None,
    **_: object,
) -> torch.Tensor:
    """Thin-plate interpolation of the hole from its border (see :mod:`.smooth`).

    Best for scratches, thin strokes and small holes; a linear ramp comes back
    exactly. ``tension`` 0 gives the pure biharmonic fill.
    """
    return smooth_fill(image[0], hole[0], tension=tension, progress=progress)[None]


def fill_color(
    image: torch.Tensor, hole: torch.Tensor, color: tuple[float, ...] = (0.5, 0.5, 0.5), **_: object
) -> torch.Tensor:
    """A flat colour: RGB or RGBA in 0..1, or hex text like ``#808080`` or
    ``#80808040``. Its luminance on a one-channel image; alpha 1 unless given, and
    given only for an RGBA image."""
    if isinstance(color, str):
        color = parse_color(color)
    values = color.flatten().tolist() if isinstance(color, torch.Tensor) else color
    if (
        not isinstance(values, (tuple, list))
        or len(values) not in (3, 4)
        or not all(isinstance(v, numbers.Real) and 0 <= v <= 1 for v in values)
    ):
        raise UncropError(
            "color: expected RGB or RGBA values in 0..1, or hex text like #808080 or "
            f"#80808040, got {color!r}."
        )
    values = list(values)
    if len(values) == 4 and image.shape[-1] != 4 and values[3] != 1:
        raise UncropError(
            f"color: alpha {values[3]:.3g} needs an RGBA image; this one has "
            f"{image.shape[-1]} channel(s). Give an opaque colour, like #808080."
        )
    rgb = torch.tensor(values[:3], device=image.device, dtype=image.dtype)
    flat = match_channels(rgb, image.shape[-1])
    if len(values) == 4 and image.shape[-1] == 4:
        flat[3] = values[3]
    return torch.where(hole.unsqueeze(-1), flat.expand_as(image), image)


def _is_grey(image: torch.Tensor, hole: torch.Tensor) -> bool:
    """Whether an RGB(A) image's three colour channels are equal on its known pixels
    (what the hole holds, a coloured object being removed, say, does not count)."""
    c = image[..., :3]
    return image.shape[-1] >= 3 and bool(((c == c[..., :1]).all(dim=-1) | hole).all())


def fill_noise(image: torch.Tensor, hole: torch.Tensor, seed: int = 0, **_: object) -> torch.Tensor:
    """Gaussian noise with the known area's per-image colour mean and spread.

    Gives a diffusion model something to denoise that already has the right
    average colour, which avoids the grey cast a flat fill leaves.
    """
    work = at_least_float32(image)
    mean, var = _known_mean_var(work, hole)
    gen = generator(seed)
    # Drawn in float32 on the CPU whatever the image: a seed gives the same noise in
    # every dtype and on every device.
    noise = torch.randn(work.shape, generator=gen).to(work.device, work.dtype)
    if _is_grey(image, hole):  # grey noise for a grey photo (its three channels are equal)
        noise[..., 1:3] = noise[..., :1]
    # In place: at 8192 px each new frame-sized tensor costs a second of page faults.
    values = noise.mul_(var.sqrt()).add_(mean).clamp_(0, 1).to(image.dtype)
    if image.shape[-1] == 4:  # no noise in the alpha: the border's, as the edge fill gives it
        values[..., 3:] = fill_edge(image[..., 3:], hole)
    return torch.where(hole.unsqueeze(-1), values, image)


def _known_mean_var(image: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's colour mean and variance over its known pixels, ``[B,1,1,C]`` each
    (an RGBA pixel counts by its alpha: a transparent one's colour for none).

    Weighted sums as matrix products over a million pixels at a time: broadcasting a
    ``[B,H,W,1]`` weight over the frame took 5x longer, and frame-sized temporaries
    more again."""
    b, c = image.shape[0], image.shape[-1]
    flat = image.reshape(b, -1, c)
    known = (~hole).reshape(b, 1, -1).to(image.dtype)
    if c == 4:
        known = known * flat[..., 3].unsqueeze(1)
    step = 1 << 20

    def parts():  # in float64, a million pixels at a time: float32 products drift
        for i in range(0, flat.shape[1], step):
            yield known[..., i : i + step].double(), flat[:, i : i + step].double()

    count = known.sum(dim=-1, keepdim=True, dtype=torch.float64).clamp_min(1e-6)
    mean = sum(torch.bmm(k, f) for k, f in parts()) / count
    var = sum(torch.bmm(k, (f - mean).square()) for k, f in parts()) / count
    return mean.view(b, 1, 1, c).to(image.dtype), var.view(b, 1, 1, c).to(image.dtype)


def _source(hole: torch.Tensor, source_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Allowed patch sources ``[H,W]`` bool from an optional ``[1,H,W]`` source mask."""
    if source_mask is None:
        return None
    return source_mask[0] > 0.5


def fill_patch(
    image: torch.Tensor,
    hole: torch.Tensor,
    seed: int = 0,
    patch_size: int = DEFAULT_PATCH_SIZE,
    source_mask: torch.Tensor | None = None,
    progress: ProgressHook | None = None,
    **_: object,
) -> torch.Tensor:
    """Copy patches from the known image (PatchMatch + EM voting, see :mod:`.patchmatch`).

    Best for removing objects from textured backgrounds. ``source_mask`` (1 = may
    copy from here) keeps patches away from, say, the object being removed.
    """
    source = _source(hole, source_mask)
    out = patch_fill(image[0], hole[0], source, patch_size, seed=seed, progress=progress)
    return out[None]


def fill_pattern(
    image: torch.Tensor,
    hole: torch.Tensor,
    seed: int = 0,
    patch_size: int = DEFAULT_PATCH_SIZE,
    source_mask: torch.Tensor | None = None,
    progress: ProgressHook | None = None,
    **_: object,
) -> torch.Tensor:
    """Extend a repetitive texture by whole periods (see :mod:`.pattern`).

    Falls back to :func:`fill_patch` when the known area has no clear period, or
    for whatever the lattice cannot reach; the log says which was used.
    """
    check_patch_size(patch_size)  # read only by the fallback: refused either way
    allowed = ~hole[0]
    if source_mask is not None:
        allowed = allowed & _source(hole, source_mask)
    period = estimate_period(image[0], allowed)
    if period is None:
        log.info("pattern: no clear period in the known area; using patch fill.")
        return fill_patch(
            image,
            hole,
            seed=seed,
            patch_size=patch_size,
            source_mask=source_mask,
            progress=progress,
        )
    log.info(
        "pattern: period %s and %s (correlation %.2f).", period.first, period.second, period.score
    )
    blocked = hole[0] | ~allowed
    out, left = extend_pattern(image[0], blocked, period, progress=progress)
    out = torch.where(hole[0].unsqueeze(-1), out, image[0])
    left = left & hole[0]
    if bool(left.any()):
        log.info(
            "pattern: %d pixels out of the lattice's reach; patch-filling them.", int(left.sum())
        )
        # Patches may come from the lattice's copies too, unless the user limited them.
        source = None if source_mask is None else allowed
        out = patch_fill(out, left, source, patch_size, seed=seed, progress=progress)
    return out[None]


FILL_METHODS: dict[str, FillMethod] = {
    "smooth": fill_smooth,
    "patch": fill_patch,
    "pattern": fill_pattern,
    "edge": fill_edge,
    "mirror": fill_mirror,
    "color": fill_color,
    "noise": fill_noise,
}


# Methods whose new pixels mix known ones (the rest copy whole pixels or make their own).
MIXING = ("smooth", "patch", "pattern")
# Methods that copy from the image, with patch's options (pattern falls back to patch).
PATCH_METHODS = ("patch", "pattern")


def _alpha_weighted(run: FillMethod) -> FillMethod:
    """``run`` on an RGBA image with its colours weighted by alpha, divided out after: the
    colour hidden under transparent pixels, often black, is no part of a fill (mixed in
    straight, a red disc's edge came out as dark as 0.05 red)."""

    def weighted(image: torch.Tensor, hole: torch.Tensor, **kw: object) -> torch.Tensor:
        out = unpremultiplied(run(premultiplied(image), hole, **kw))
        return torch.where(hole.unsqueeze(-1), out, image)

    return weighted


def fill(
    image: torch.Tensor,
    mask: torch.Tensor,
    method: str = "smooth",
    *,
    seed: int = 0,
    progress: ProgressHook | None = None,
    device: torch.device | str | None = None,
    **options: object,
) -> torch.Tensor:
    """Fill every pixel of the hole (``mask >= HOLE_LEVEL``, 1/255); all other pixels
    are returned as checked (within 0..1), in a new tensor.

    Each image is filled on ``device`` (default: where ``image`` is), one at a time, and
    its result comes back to ``image``'s device: a batch of frames on the CPU never sits
    on the GPU whole, only the image being filled.

    The result is not blended: use :func:`uncrop.core.composite.composite` to
    feather it into the original along a soft mask. A ``source_mask`` option is read
    (and checked) only by the methods that copy from the image, ``PATCH_METHODS``.
    """
    if method not in FILL_METHODS:
        raise UncropError(f"method: expected one of {', '.join(FILL_METHODS)}, got '{method}'.")
    check_seed(seed)
    image, mask = match_mask(image, mask)
    if is_empty(mask):
        return image.clone()  # always a new tensor: callers write into the result
    hook = or_null(progress)
    hole = hole_of(mask)
    source_mask = options.pop("source_mask", None)
    if method not in PATCH_METHODS:
        source_mask = None  # read only where patches are copied
    if source_mask is not None:
        source_mask = match_source(image, source_mask)
    out = image.new_empty(image.shape)  # each image's fill goes straight in: no batch copy
    for i in range(image.shape[0]):
        hook.check_interrupted()
        if not bool(hole[i].any()):
            out[i] = image[i]
        elif bool(hole[i].all()) and method != "color":  # a colour needs nothing known
            log.warning("Fill: image %d is masked entirely, nothing to fill from; using grey.", i)
            out[i : i + 1] = fill_color(image[i : i + 1], hole[i : i + 1])
        else:
            if source_mask is not None:
                options["source_mask"] = source_mask[i : i + 1].to(device)
            part = Part(hook, i, image.shape[0])
            run = FILL_METHODS[method]
            if method in MIXING and image.shape[-1] == 4:
                run = _alpha_weighted(run)
            one, its_hole = image[i : i + 1].to(device), hole[i : i + 1].to(device)
            out[i : i + 1] = run(one, its_hole, seed=seed + i, progress=part, **options)
        hook.update(i + 1, image.shape[0])
    return out


def match_source(image: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
    """``source_mask`` (1 = may be copied from) checked and matched to ``image``'s size
    and batch: one mask for all images, or one per image."""
    _, source = match_mask(image, source_mask, mask_name="source_mask", marks_fill=False)
    if source.shape[0] != image.shape[0]:
        raise UncropError(
            f"source_mask: a batch of {source.shape[0]} for {image.shape[0]} image(s); "
            "use one source mask for all images or one per image."
        )
    return source


def parse_color(text: str, name: str = "color") -> tuple[float, ...]:
    """``#rrggbb`` / ``#rgb`` to an RGB tuple in 0..1, and ``#rrggbbaa`` / ``#rgba`` to
    RGBA (as CSS writes them); the ``#`` is optional."""
    value = text.strip().lstrip("#")
    if len(value) in (3, 4):
        value = "".join(ch * 2 for ch in value)
    if len(value) not in (6, 8) or not all(ch in "0123456789abcdefABCDEF" for ch in value):
        # (int(..., 16) would take signs, spaces and underscores)
        raise UncropError(
            f"{name}: expected a hex colour like #808080 (or #80808040 with alpha), got '{text}'."
        )
    return tuple(int(value[i : i + 2], 16) / 255.0 for i in range(0, len(value), 2))


def color_option(method: str, text: str, name: str = "color") -> dict[str, object]:
    """The ``color`` option of :func:`fill` for ``method``: parsed only where it is
    used, so a colour left empty or half typed does not stop the other methods."""
    return {"color": parse_color(text, name)} if method == "color" else {}
