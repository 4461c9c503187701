"""Model-free inpaint and outpaint jobs: the steps the Fill node, Expand Canvas and
the CLI share, so all three give the same pixels for the same settings."""

from __future__ import annotations

import torch

from . import canvas
from .composite import composite
from .fill import PATCH_METHODS, fill
from .inputs import match_mask
from .progress import ProgressHook


def inpaint(
    image: torch.Tensor,
    mask: torch.Tensor,
    method: str = "smooth",
    *,
    seed: int = 0,
    progress: ProgressHook | None = None,
    **options: object,
) -> torch.Tensor:
    """Fill the masked area and blend it in along the mask; mask == 0 stays exact (values
    a resampler left past 0..1 included)."""
    checked, mask = match_mask(image, mask)
    filled = fill(checked, mask, method, seed=seed, progress=progress, **options)
    return composite(image, filled, mask)


def outpaint(
    image: torch.Tensor,
    plan: canvas.CanvasPlan,
    method: str = "mirror",
    *,
    overlap: int = 0,
    seed: int = 0,
    progress: ProgressHook | None = None,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Place the image on the plan's canvas and fill the new area.

    Returns ``(image, mask)``: the mask marks the new area (1) plus the optional
    ``overlap`` band, ready for a model to refine; the image is final as it is.
    A ``source_mask`` option is given in the input image's pixels and is moved
    onto the canvas here (the new area is never a source); like :func:`fill`, only the
    methods that copy (``PATCH_METHODS``) read it.
    """
    placed, mask = canvas.expand_canvas(image, plan, overlap=overlap)
    if not plan.adds_area:
        return placed, mask
    if method in PATCH_METHODS and options.get("source_mask") is not None:
        _, source = match_mask(
            image, options["source_mask"], "image", "source_mask", marks_fill=False
        )
        placed_source, _ = canvas.expand_canvas(source.unsqueeze(-1), plan)
        options["source_mask"] = (placed_source[..., 0] > 0.5).to(placed.dtype)
    new_area = canvas.outpaint_mask(plan, 0, device=placed.device).expand_as(mask)
    filled = fill(placed, new_area, method, seed=seed, progress=progress, **options)
    return torch.where(new_area.unsqueeze(-1) > 0, filled, placed), mask
