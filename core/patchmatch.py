"""Exemplar-based completion: PatchMatch search with EM voting, coarse to fine.

The hole is filled by copying patches from the known image (Wexler, Shechtman &
Irani 2007, with the nearest-neighbour field found by PatchMatch, Barnes et al.
2009). On each level of a pyramid, from coarse to fine, a few EM rounds alternate

- search: for every pixel whose patch touches the hole, find a similar patch whose
  centre lies in the allowed source area (fully known, and inside the optional
  source mask), by PatchMatch: candidates propagated from neighbours at halving
  distances (as in jump flooding, so all pixels update at once) and random
  samples around the current match at shrinking radii;
- vote: every hole pixel becomes the similarity-weighted mean of the colours that
  the patches covering it propose.

Everything is batched tensor code over all hole pixels (no per-pixel loops), runs
on the input's device, and is deterministic for a seed. Copies only ever come from
pixels that are known and allowed: candidates are snapped to the nearest allowed
patch centre, and votes from anywhere else are dropped.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .errors import UncropError

log = logging.getLogger(__name__)

COARSEST_SIDE = 32  # the pyramid stops when the shorter side would drop below this
FEATURES = 12  # principal components of a patch used to compare patches


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return F.max_pool2d(mask[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Erode, treating pixels beyond the frame as outside the mask."""
    if radius <= 0:
        return mask
    padded = F.pad(mask[None, None].float(), (radius,) * 4, value=0.0)
    k = 2 * radius + 1
    return -F.max_pool2d(-padded, k, stride=1)[0, 0] > 0


def _snap_table(valid: torch.Tensor) -> torch.Tensor:
    """``[H*W]`` flat index of the nearest valid pixel for every pixel."""
    from .fill import nearest_known

    near = nearest_known((~valid)[None])[0]
    w = valid.shape[1]
    return (near[..., 0] * w + near[..., 1]).flatten()


class _Level:
    """One pyramid level: image, hole, allowed source centres and patch geometry."""

    def __init__(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        source: torch.Tensor,
        radius: int,
    ) -> None:
        h, w, _c = image.shape
        dev = image.device
        self.image, self.hole, self.source = image, hole, source
        self.h, self.w, self.radius = h, w, radius
        valid = _erode(source, radius)
        if not bool(valid.any()):
            valid = source
        self.valid = valid
        self.snap = _snap_table(valid)
        self.valid_flat = torch.nonzero(valid.flatten()).flatten()
        self.targets = torch.nonzero(_dilate(hole, radius).flatten()).flatten()
        r = torch.arange(-radius, radius + 1, device=dev)
        oy, ox = torch.meshgrid(r, r, indexing="ij")
        self.oy, self.ox = oy.flatten(), ox.flatten()

    def patches(self, image: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """``[N,K*C]`` patch pixels around flat ``centres`` (clamped at the frame)."""
        y = (centres // self.w).unsqueeze(1) + self.oy
        x = (centres % self.w).unsqueeze(1) + self.ox
        flat = y.clamp(0, self.h - 1) * self.w + x.clamp(0, self.w - 1)
        return image.reshape(-1, image.shape[-1])[flat].reshape(centres.numel(), -1)

    def fit_features(self, gen: torch.Generator) -> None:
        """Principal components of the allowed source patches, as conv filters.

        Patch distances are then measured between ``FEATURES``-long projections
        instead of whole patches: far less memory traffic per candidate, and the
        ranking of candidates barely changes (most of a patch's energy is in its
        first components).
        """
        c = self.image.shape[-1]
        n = self.valid_flat.numel()
        pick = (torch.rand(min(n, 4096), generator=gen) * n).long().to(self.image.device)
        sample = self.patches(self.image, self.valid_flat[pick.clamp_max(n - 1)])
        sample = sample - sample.mean(dim=0)
        cov = sample.T @ sample / max(1, sample.shape[0] - 1)
        _vals, vecs = torch.linalg.eigh(cov)
        d = min(FEATURES, vecs.shape[1])
        basis = vecs[:, -d:].flip(1)  # [K*C, d], strongest first
        side = 2 * self.radius + 1
        self.filters = basis.T.reshape(d, side, side, c).permute(0, 3, 1, 2).contiguous()

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """``[H*W, d]`` patch projections of every pixel (frame replicated)."""
        r = self.radius
        x = F.pad(image.movedim(-1, 0)[None], (r, r, r, r), mode="replicate")
        return F.conv2d(x, self.filters)[0].flatten(1).T.contiguous()


class _Search:
    """PatchMatch over the level's targets; ``nnf`` is a dense ``[H*W]`` field of source centres."""

    def __init__(self, level: _Level, gen: torch.Generator) -> None:
        self.level = level
        self.gen = gen

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(self.level.image.device)

    def random_field(self) -> torch.Tensor:
        lv = self.level
        pick = (self._rand(lv.h * lv.w) * lv.valid_flat.numel()).long()
        return lv.valid_flat[pick.clamp_max(lv.valid_flat.numel() - 1)]

    def _distance(self, target: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        return ((self.feat[cand] - target) ** 2).sum(dim=1)

    def _shift(self, cand_yx: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        lv = self.level
        y = cand_yx[0].clamp(0, lv.h - 1)
        x = cand_yx[1].clamp(0, lv.w - 1)
        return lv.snap[y * lv.w + x]

    def run(
        self, image: torch.Tensor, nnf: torch.Tensor, iterations: int, global_search: bool
    ) -> torch.Tensor:
        """Improve ``nnf`` at the targets for the current ``image``.

        A global search propagates over long jumps and samples the whole frame; a
        local one (on finer levels, whose field comes upsampled from the coarser
        level) propagates to near neighbours and samples within a few pixels.
        """
        lv = self.level
        lv.image_now = image
        t = lv.targets
        ty, tx = t // lv.w, t % lv.w
        self.feat = lv.features(image)
        tp = self.feat[t]
        best = nnf[t]
        best_d = self._distance(tp, best)
        longest = max(lv.h, lv.w)
        if global_search:
            jumps = [1 << k for k in range(max(1, int(math.log2(longest)) - 2), -1, -1)]
            reach = float(longest)
        else:
            jumps, reach = [2, 1], 4.0
        for _ in range(iterations):
            for k in jumps:
                for dy, dx in ((-k, 0), (k, 0), (0, -k), (0, k)):
                    ny = (ty + dy).clamp(0, lv.h - 1)
                    nx = (tx + dx).clamp(0, lv.w - 1)
                    src = nnf[ny * lv.w + nx]
                    cand = self._shift((src // lv.w - (ny - ty), src % lv.w - (nx - tx)))
                    d = self._distance(tp, cand)
                    better = d < best_d
                    best = torch.where(better, cand, best)
                    best_d = torch.where(better, d, best_d)
                nnf[t] = best
            radius = reach
            while radius >= 1:
                ry = ((self._rand(t.numel()) * 2 - 1) * radius).round().long()
                rx = ((self._rand(t.numel()) * 2 - 1) * radius).round().long()
                cand = self._shift((best // lv.w + ry, best % lv.w + rx))
                d = self._distance(tp, cand)
                better = d < best_d
                best = torch.where(better, cand, best)
                best_d = torch.where(better, d, best_d)
                radius /= 2
            nnf[t] = best
        self.distance = best_d
        return nnf

    def vote(self, nnf: torch.Tensor, sharp: bool = False) -> torch.Tensor:
        """Each hole pixel: similarity-weighted mean of what the patches covering it propose.

        ``sharp`` (the last vote) instead takes the proposal of the best-matching
        patch, so that fine texture is copied rather than averaged away.
        """
        lv = self.level
        image = lv.image_now
        c = image.shape[-1]
        flat = image.reshape(-1, c)
        dist = torch.full((lv.h * lv.w,), float("inf"), device=image.device, dtype=image.dtype)
        dist[lv.targets] = self.distance
        sigma2 = torch.quantile(self.distance, 0.75).clamp_min(1e-6)
        source_flat = lv.source.flatten()
        q = torch.nonzero(lv.hole.flatten()).flatten()
        qy, qx = q // lv.w, q % lv.w
        total = image.new_zeros(q.numel(), c)
        weight = image.new_zeros(q.numel(), 1)
        top = image.new_zeros(q.numel(), 1)
        top_colour = image.new_zeros(q.numel(), c)
        for oy, ox in zip(lv.oy.tolist(), lv.ox.tolist(), strict=True):
            ty, tx = qy - oy, qx - ox
            inside = (ty >= 0) & (ty < lv.h) & (tx >= 0) & (tx < lv.w)
            t = ty.clamp(0, lv.h - 1) * lv.w + tx.clamp(0, lv.w - 1)
            src = nnf[t]
            sy, sx = src // lv.w + oy, src % lv.w + ox
            ok = inside & (sy >= 0) & (sy < lv.h) & (sx >= 0) & (sx < lv.w)
            s = sy.clamp(0, lv.h - 1) * lv.w + sx.clamp(0, lv.w - 1)
            ok = ok & source_flat[s]
            wt = torch.exp(-dist[t] / (2 * sigma2)) * ok
            wt = torch.where(ok, wt.clamp_min(1e-8), wt).unsqueeze(1)
            total += flat[s] * wt
            weight += wt
            if sharp:
                better = wt > top
                top = torch.where(better, wt, top)
                top_colour = torch.where(better, flat[s], top_colour)
        out = flat.clone()
        voted = weight[:, 0] > 0
        out[q[voted]] = (top_colour if sharp else total / weight.clamp_min(1e-30))[voted]
        out[q[~voted]] = flat[lv.snap[q[~voted]]]
        return out.reshape(image.shape)


def _downsample(
    image: torch.Tensor, hole: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    known = (~hole).to(image.dtype)[None, None]
    v = image.movedim(-1, 0)[None]
    weight = F.avg_pool2d(known, 2, ceil_mode=True)
    total = F.avg_pool2d(v * known, 2, ceil_mode=True)
    out = (total / weight.clamp_min(1e-6))[0].movedim(0, -1)
    new_hole = weight[0, 0] < 0.999
    new_source = -F.max_pool2d(-source[None, None].float(), 2, ceil_mode=True)[0, 0] > 0
    return out, new_hole, new_source & ~new_hole


def _upsample_nnf(nnf: torch.Tensor, coarse: tuple[int, int], fine: _Level) -> torch.Tensor:
    hc, wc = coarse
    yy = torch.arange(fine.h, device=nnf.device).view(-1, 1)
    xx = torch.arange(fine.w, device=nnf.device).view(1, -1)
    cy, cx = (yy // 2).clamp_max(hc - 1), (xx // 2).clamp_max(wc - 1)
    src = nnf[(cy * wc + cx).flatten()].view(fine.h, fine.w)
    sy = (src // wc) * 2 + (yy - cy * 2)
    sx = (src % wc) * 2 + (xx - cx * 2)
    flat = sy.clamp(0, fine.h - 1) * fine.w + sx.clamp(0, fine.w - 1)
    return fine.snap[flat.flatten()]


def patch_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    source: torch.Tensor | None = None,
    patch_size: int = 7,
    seed: int = 0,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fill ``hole`` ``[H,W]`` of ``image`` ``[H,W,C]`` with patches copied from the image.

    ``source`` ``[H,W]`` bool marks where patches may come from (default: anywhere
    known); ``patch_size`` is the side of the compared square patches (odd, >= 3).
    ``start`` is an optional first guess for the coarsest level (else the border
    colours are pulled in).
    """
    if patch_size < 3 or patch_size % 2 == 0:
        raise UncropError(f"patch_size: expected an odd number >= 3, got {patch_size}.")
    allowed = ~hole if source is None else (source & ~hole)
    if not bool(allowed.any()):
        raise UncropError(
            "source_mask: leaves no known pixels to copy patches from; allow some of the "
            "area outside the mask."
        )
    work = image.float() if image.dtype in (torch.float16, torch.bfloat16) else image
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    radius = patch_size // 2
    pyramid = [(work, hole, allowed)]
    # Coarsen only while the hole is wider than a patch: thin holes are best
    # matched at full resolution, where their surroundings are intact.
    while min(pyramid[-1][0].shape[:2]) // 2 >= COARSEST_SIDE and bool(
        _erode(pyramid[-1][1], radius).any()
    ):
        nxt = _downsample(*pyramid[-1])
        if not bool(nxt[2].any()):
            break
        pyramid.append(nxt)
    filled: torch.Tensor | None = None
    nnf: torch.Tensor | None = None
    prev_shape: tuple[int, int] | None = None
    depth_count = len(pyramid)
    for depth in range(depth_count - 1, -1, -1):
        values, lvl_hole, lvl_source = pyramid[depth]
        if not bool(lvl_hole.any()):
            filled, nnf, prev_shape = values, None, None
            continue
        level = _Level(values, lvl_hole, lvl_source, radius)
        level.fit_features(gen)
        search = _Search(level, gen)
        if filled is None:
            from .fill import fill_edge

            guess = fill_edge(values[None], lvl_hole[None])[0] if start is None else start
        else:
            up = F.interpolate(filled.movedim(-1, 0)[None], size=values.shape[:2], mode="bilinear")[
                0
            ].movedim(0, -1)
            guess = up
        current = torch.where(lvl_hole.unsqueeze(-1), guess, values)
        if nnf is None or prev_shape is None:
            nnf = search.random_field()
        else:
            nnf = _upsample_nnf(nnf, prev_shape, level)
        coarsest = depth == depth_count - 1
        rounds = 6 if coarsest else 2
        for i in range(rounds):
            nnf = search.run(current, nnf, 2 if coarsest else 1, coarsest)
            current = search.vote(nnf, sharp=depth == 0 and i == rounds - 1)
        filled, prev_shape = current, (level.h, level.w)
    assert filled is not None
    return torch.where(hole.unsqueeze(-1), filled.to(image.dtype), image)
