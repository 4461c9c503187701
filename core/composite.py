"""Pasting a generated or filled image back into the original.

:func:`composite` guarantees that every pixel where the mask is 0 is
bit-identical to the original, whatever happened to the generated image, and
blends linearly where the mask is soft. :func:`color_match` shifts the generated
area's colours towards its surroundings first, which removes the colour cast a
diffusion model or VAE round trip often leaves.
"""

from __future__ import annotations

import torch

from .errors import UncropError
from .inputs import (
    MODEL_HOLE,
    at_least_float32,
    check_image,
    hole_of,
    is_whole,
    match_mask,
    premultiplied,
    unpremultiplied,
)
from .masks import dilate
from .progress import ProgressHook, or_null

COLOR_MATCH_MODES = ("none", "mean_std", "histogram")


def match_generated(
    original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check ``original``, ``generated`` and ``mask`` and bring them to one batch, size,
    device, dtype and channel count (the original's).

    A batch of 1 on either side is used for every item of the other; a grey original
    takes the generated image's luminance, an RGBA one keeps an opaque alpha.
    """
    single = not isinstance(original, torch.Tensor) or original.ndim < 4 or len(original) == 1
    original, mask = match_mask(original, mask, "original", "mask")
    generated = check_image(generated, "generated")
    if generated.shape[1:3] != original.shape[1:3]:
        raise UncropError(
            f"generated image is {generated.shape[2]}x{generated.shape[1]} but the original is "
            f"{original.shape[2]}x{original.shape[1]}; they must be the same size."
        )
    b_gen, b_orig = generated.shape[0], original.shape[0]  # mask and original agree now
    if b_gen != b_orig:
        if b_orig == 1:
            original = original.expand(b_gen, *original.shape[1:])
            mask = mask.expand(b_gen, *mask.shape[1:])
        elif b_gen == 1:
            generated = generated.expand(b_orig, *generated.shape[1:])
        else:
            other = "mask batch" if single else "original batch"  # one original per mask
            raise UncropError(
                f"generated batch of {b_gen} does not match the {other} of {b_orig}; "
                "use one image on either side or the same number on both."
            )
    generated = generated.to(original.device, original.dtype)
    if generated.shape[-1] != original.shape[-1]:
        generated = match_channels(generated, original.shape[-1])
    return original, generated, mask


def transparent_hole(original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """``[B,H,W]``: how much more of the generated image an RGBA ``original``'s pixels
    take for being transparent; None for an opaque image.

    A transparent pixel has nothing to keep: inside the hole a model sees (``mask`` from
    ``MODEL_HOLE``) it takes the generated pixel as much as it is transparent, and below
    that, where the mask's soft edge runs over it, proportionally less, down to none at
    mask 0. (Applied only inside the hole, a feathered mask's alpha jumped from 0.5 to 1
    at its 0.5 line.)
    """
    if original.shape[-1] != 4:
        return None
    reach = (mask / MODEL_HOLE).clamp(0, 1)
    return reach * (1 - original[..., 3].clamp(0, 1))


def composite(
    original: torch.Tensor,
    generated: torch.Tensor,
    mask: torch.Tensor,
    seam: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``original * (1 - mask) + generated * mask``: the original bit for bit where
    ``mask == 0`` (values a resampler left past 0..1 included) and exactly the generated
    image where it is 1; blended pixels are within 0..1. RGBA blends premultiplied by
    alpha, and an RGBA original's transparent pixels take more of the generated image,
    all of it inside the hole (:func:`transparent_hole`).

    ``seam`` (the samplers' feathered weight, 0 where ``mask`` is) blends in the mask's
    place; the transparent pixels' share is still reckoned from ``mask``.

    Each image is blended on ``device`` (default: where ``original`` is) and comes back
    to ``original``'s device: a batch never sits on the GPU whole.
    """
    given = check_image(original, "original", values=False)
    original, generated, mask = match_generated(original, generated, mask)
    clear = transparent_hole(original, mask)
    if seam is not None:
        mask = seam.to(mask.device, mask.dtype).expand_as(mask)
    if clear is not None:  # written so that a fully transparent pixel takes exactly 1
        mask = torch.where(clear > 0, 1 - (1 - mask) * (1 - clear), mask)
    weight = mask.unsqueeze(-1).expand(*original.shape[:-1], 1)
    given = given.expand_as(original)
    out = original.new_empty(original.shape)
    for i in range(out.shape[0]):  # one image at a time: no batch-sized temporaries
        w, kept = weight[i].to(device), given[i].to(device)
        blend = _blend(original[i].to(device), generated[i].to(device), w)
        # At 0 lerp gives original + 0, which turns -0.0 into +0.0, so those are copied.
        out[i] = torch.where(w > 0, blend, kept)
    return out


def _blend(original: torch.Tensor, generated: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``lerp(original, generated, weight)`` of two images in 0..1, exactly ``generated``
    where ``weight`` is 1 (lerp computes from the nearer end). RGBA colours are weighted by
    their alpha: a transparent pixel's hidden colour, often black, is no part of the blend
    (straight, it darkened a soft edge over transparency to below both sides)."""
    if original.shape[-1] != 4:
        return torch.lerp(original, generated, weight)
    mixed = unpremultiplied(torch.lerp(premultiplied(original), premultiplied(generated), weight))
    return torch.where(weight >= 1, generated, mixed)


# Rec. 709 luminance, for a grey original with a colour generated image.
_LUMA = (0.2126, 0.7152, 0.0722)


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """``image`` ``[...,C]`` with ``channels`` channels: luminance for one, alpha 1 added
    for four."""
    if channels == 1:
        rgb = image[..., :3]
        return (rgb * rgb.new_tensor(_LUMA)).sum(-1, keepdim=True)
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:-1], 3)
    if channels == 4 and image.shape[-1] == 3:
        return torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)
    return image[..., :channels]


# sRGB (D65) <-> CIE Lab, in torch so it runs on the same device as the images.
_RGB_TO_XYZ = torch.tensor(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` sRGB in 0..1 to Lab (L in 0..100)."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.to(rgb).T / _WHITE.to(rgb)
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp_min(1e-12) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = torch.stack([fx, fy, fz], -1)
    eps = 6 / 29
    xyz = torch.where(f > eps, f**3, (f - 16 / 116) * 3 * eps**2) * _WHITE.to(lab)
    lin = xyz @ torch.linalg.inv(_RGB_TO_XYZ).to(lab).T
    lin = lin.clamp(0, 1)
    return torch.where(
        lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055
    ).clamp(0, 1)


def _match_values(src: torch.Tensor, ref: torch.Tensor, mode: str, flat: float) -> torch.Tensor:
    """Map ``src`` values ``[N, C]`` so their per-channel statistics follow ``ref``.

    ``flat`` is the spread below which a channel counts as flat (about one step a
    person can see): neither mode stretches rounding noise into speckles or stripes.
    """
    if mode == "mean_std":
        s_mean, s_std = src.mean(0), src.std(0, unbiased=False).clamp_min(flat)
        r_mean, r_std = ref.mean(0), ref.std(0, unbiased=False)
        return (src - s_mean) / s_std * r_std + r_mean
    # histogram: each source value takes the reference value at its quantile. Values
    # within a hundredth of ``flat`` (rounding noise) count as equal, and equal values
    # share their mid-rank, so a flat area stays flat (one value: the median).
    out = torch.empty_like(src)
    n, m = src.shape[0], ref.shape[0]
    for c in range(src.shape[1]):
        steps = torch.round(src[:, c] / (flat / 100))
        _, where, count = torch.unique(steps, return_inverse=True, return_counts=True)
        below = torch.cumsum(count, 0) - count
        # The mid-rank quantile q = (below + count / 2) / n sits at q m - 1/2 in the sorted
        # reference: (num / den) with integers, exact however many pixels (and MPS has
        # no float64).
        num, den = (2 * below + count) * m - n, 2 * n
        lo = torch.div(num, den, rounding_mode="floor")
        t = ((num - lo * den) / den).to(src.dtype)
        t = torch.where((lo < 0) | (lo >= m - 1), torch.zeros_like(t), t)
        lo = lo.clamp(0, m - 1)
        ref_sorted = torch.sort(ref[:, c]).values
        out[:, c] = torch.lerp(ref_sorted[lo], ref_sorted[(lo + 1).clamp_max(m - 1)], t)[where]
    return out


def _match_into(
    out: torch.Tensor, reference: torch.Tensor, inside: torch.Tensor, ring: torch.Tensor, mode: str
) -> None:
    """One ``[H,W,C]`` image of :func:`color_match`: ``out``'s ``inside`` pixels matched
    to ``reference``'s ``ring``, in place."""
    gen, ref = at_least_float32(out), at_least_float32(reference)
    if out.shape[-1] >= 3:  # RGB(A) in Lab, where one unit is about a visible step
        src, seen = rgb_to_lab(gen[..., :3][inside]), rgb_to_lab(ref[..., :3][ring])
        out[..., :3][inside] = lab_to_rgb(_match_values(src, seen, mode, flat=1.0)).to(out.dtype)
    else:  # a grey image by its one channel: one Lab unit of lightness
        matched = _match_values(gen[inside], ref[ring], mode, flat=0.01)
        out[inside] = matched.clamp(0, 1).to(out.dtype)


def color_match(
    generated: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "mean_std",
    band: int = 32,
    progress: ProgressHook | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Match the colours of ``generated`` inside the mask to ``reference`` around it.

    The statistics of the masked area are moved to those of the known pixels in a
    ``band`` px ring around the mask (an RGBA reference's opaque ones: alpha 0.5 or more),
    in Lab (``mean_std``) or per Lab channel by
    quantiles (``histogram``); a grey image by its one channel. Pixels outside the
    mask are not changed. Returns ``generated`` matched to ``reference`` (see
    :func:`match_generated`). ``progress`` hears of each image done and can cancel
    between them. Each image is matched on ``device`` (default: where ``generated`` is)
    and comes back to ``generated``'s device.
    """
    if mode not in COLOR_MATCH_MODES:
        raise UncropError(
            f"color_match: expected one of {', '.join(COLOR_MATCH_MODES)}, got '{mode}'."
        )
    if not is_whole(band) or band < 1:
        raise UncropError(f"band: expected a whole number of px, 1 or more, got {band!r}.")
    if mode == "none":
        return generated
    reference, generated, mask = match_generated(reference, generated, mask)
    out = generated.clone()
    hook = or_null(progress)
    for i in range(generated.shape[0]):
        hook.check_interrupted()
        inside = hole_of(mask[i].to(device))
        if inside.any():
            ring = (dilate(inside[None].to(mask.dtype), band)[0] > 0) & ~inside
            ref = reference[i].to(device)
            if ref.shape[-1] == 4:  # a transparent pixel's colour is hidden, not seen
                ring &= ref[..., 3] >= 0.5
            if int(ring.sum()) >= 16:
                matched = out[i].to(device)  # out[i] itself where the device is the same
                _match_into(matched, ref, inside, ring, mode)
                out[i] = matched
        hook.update(i + 1, generated.shape[0])
    return out
