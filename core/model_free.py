"""Model-free inpaint and outpaint jobs: the steps the Fill node, Expand Canvas and
the CLI share, so all three give the same pixels for the same settings."""

from __future__ import annotations

import torch

from . import canvas
from .composite import composite
from .fill import PATCH_METHODS, fill, match_source
from .inputs import SEED_LIMIT, check_image, check_seed, match_mask
from .progress import Part, ProgressHook, or_null


def inpaint(
    image: torch.Tensor,
    mask: torch.Tensor,
    method: str = "smooth",
    *,
    seed: int = 0,
    progress: ProgressHook | None = None,
    device: torch.device | str | None = None,
    **options: object,
) -> torch.Tensor:
    """Fill the masked area and blend it in along the mask; mask == 0 stays exact (values
    a resampler left past 0..1 included). Each image is filled and blended on ``device``
    (see :func:`~.fill.fill`) and comes back to ``image``'s device."""
    checked, mask = match_mask(image, mask)
    filled = fill(checked, mask, method, seed=seed, progress=progress, device=device, **options)
    return composite(image, filled, mask, device=device)


def outpaint(
    image: torch.Tensor,
    plan: canvas.CanvasPlan,
    method: str = "mirror",
    *,
    overlap: int = 0,
    seed: int = 0,
    progress: ProgressHook | None = None,
    device: torch.device | str | None = None,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place the image on the plan's canvas and fill the new area.

    Returns ``(image, mask)``: the mask marks the new area (1) plus the optional
    ``overlap`` band, ready for a model to refine; the image is final as it is.
    A ``source_mask`` option is given in the input image's pixels and is moved
    onto the canvas here (the new area is never a source); like :func:`fill`, only the
    methods that copy (``PATCH_METHODS``) read it.
    """
    check_seed(seed)
    if not plan.adds_area:  # a resize or a crop: nothing to fill
        return canvas.expand_canvas(image, plan, overlap=overlap)
    image = check_image(image, values=False)  # expand_canvas checks each image's values
    device = image.device if device is None else torch.device(device)
    source = options.pop("source_mask", None)
    if method not in PATCH_METHODS:
        source = None  # read only where patches are copied
    if source is not None:
        source = match_source(image, source)
    hook = or_null(progress)
    b = image.shape[0]
    new_area = canvas.outpaint_mask(plan, 0, device=device)
    out = image.new_empty((b, plan.canvas_h, plan.canvas_w, image.shape[-1]))
    for i in range(b):  # one image at a time on ``device``: the batch stays where it is
        placed, _ = canvas.expand_canvas(image[i : i + 1].to(device), plan)
        if source is not None:
            placed_source, _ = canvas.expand_canvas(source[i : i + 1, ..., None].to(device), plan)
            options["source_mask"] = (placed_source[..., 0] > 0.5).to(placed.dtype)
        filled = fill(
            placed, new_area, method, seed=(seed + i) % SEED_LIMIT, progress=Part(hook, i, b),
            **options,
        )  # fmt: skip
        out[i : i + 1] = torch.where(new_area[..., None] > 0, filled, placed)
    mask = canvas.outpaint_mask(plan, overlap, device=image.device).to(out.dtype)
    return out, mask.expand(b, -1, -1).contiguous()
