"""Smooth fill: a thin-plate (biharmonic) membrane under slight tension.

The hole is the solution of ``L²u + λ·Lu = 0`` with the known pixels as boundary
values, where ``L`` is the 5-point Laplacian with reflecting frame edges. With
``λ = 0`` this is the biharmonic fill of ``skimage.restoration.inpaint_biharmonic``:
it continues gradients, which suits thin scratches but overshoots across big holes.
A little tension (``λ`` set per image size so the result does not depend on the
resolution) pulls large holes towards the harmonic fill and leaves thin ones alone.

The work is done on dense grids, with shifted slices instead of index tables:
the hole is split into groups of components whose bounding boxes (grown by the
two-pixel reach of the stencil) do not touch, and each group is solved on its
box alone, so an outpaint's two side bands cost what the bands cost, not the
frame. On a box the system is solved by conjugate gradients preconditioned with
two multigrid V-cycles of the hole's Laplacian ``L_h`` (zero outside the hole),
whose square is the thin-plate operator up to a term on the pixels next to the
border: damped Jacobi smoothing, bilinear prolongation and its transpose as
restriction, ``L`` rediscretised on each coarser hole (a parent pixel is
unknown only if all its children are, so corrections stay inside). The start is
the harmonic fill, itself a few V-cycle-preconditioned CG steps. A linear ramp
comes back to float precision; known pixels are never written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Tension at a 512 px frame; scaled by (512 / size)² so the fill is resolution independent.
TENSION_AT_512 = 0.003
# Holes open to the frame (covering at least half their box's side along a frame
# edge, as in outpainting) extrapolate rather than interpolate:
# gradients continued that far overshoot, so they get this much more tension.
OPEN_TENSION_FACTOR = 10.0
_REACH = 2  # the thin-plate stencil reaches two pixels


def _laplace(x: torch.Tensor) -> torch.Tensor:
    """5-point ``4x - Σ neighbours`` of ``[C,H,W]`` with reflecting (replicated) edges.

    On a box cut from a larger frame the replicated box edge is wrong only on the
    box's own outer ring, which no hole equation reads (the box is grown by
    :data:`_REACH`); on a frame edge it is the reflecting boundary.
    """
    out = 4 * x
    out[:, 1:] -= x[:, :-1]
    out[:, :-1] -= x[:, 1:]
    out[:, :, 1:] -= x[:, :, :-1]
    out[:, :, :-1] -= x[:, :, 1:]
    # Off the edge, the neighbour is the pixel itself.
    out[:, 0] -= x[:, 0]
    out[:, -1] -= x[:, -1]
    out[:, :, 0] -= x[:, :, 0]
    out[:, :, -1] -= x[:, :, -1]
    return out


class _Grid:
    """One multigrid level: the hole as a 0/1 mask and the Jacobi diagonal."""

    def __init__(self, hole: torch.Tensor, dtype: torch.dtype) -> None:
        self.hole = hole
        self.mask = hole.to(dtype)[None]
        self.shape = hole.shape
        # 1 / degree, where the degree is 4 less the off-frame neighbours; the box
        # edges of coarse levels are treated the same way, where the hole never is
        # unless that edge is the frame's.
        h, w = hole.shape
        deg = torch.full((h, w), 4.0, dtype=dtype, device=hole.device)
        deg[0, :] -= 1
        deg[-1, :] -= 1
        deg[:, 0] -= 1
        deg[:, -1] -= 1
        self.inv_degree = (_Multigrid.OMEGA * self.mask / deg.clamp_min(1)).contiguous()

    def laplace(self, e: torch.Tensor) -> torch.Tensor:
        """``L_h e`` for ``e`` zero outside the hole (result zero there too)."""
        return _laplace(e).mul_(self.mask)


def _coarsen(hole: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-hole[None, None].float(), 2, ceil_mode=True)[0, 0] > 0


def _prolong(e: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear (weights 3/4, 1/4) from a coarse ``[C,h,w]`` to ``shape``, edges replicated."""
    c, hc, wc = e.shape
    p = F.pad(e[None], (0, 0, 1, 1), mode="replicate")[0]
    rows = e.new_empty(c, 2 * hc, wc)
    rows[:, 0::2] = 0.75 * e + 0.25 * p[:, :-2]
    rows[:, 1::2] = 0.75 * e + 0.25 * p[:, 2:]
    p = F.pad(rows[None], (1, 1, 0, 0), mode="replicate")[0]
    out = e.new_empty(c, 2 * hc, 2 * wc)
    out[:, :, 0::2] = 0.75 * rows + 0.25 * p[:, :, :-2]
    out[:, :, 1::2] = 0.75 * rows + 0.25 * p[:, :, 2:]
    return out[:, : shape[0], : shape[1]]


def _restrict(r: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The transpose of :func:`_prolong`: fine ``[C,H,W]`` to the coarse ``shape``."""
    c, h, w = r.shape
    hc, wc = shape
    r = F.pad(r, (0, 2 * wc - w, 0, 2 * hc - h))
    p = F.pad(r[None], (1, 1, 0, 0), mode="replicate")[0]
    cols = 0.75 * (p[:, :, 1:-1:2] + p[:, :, 2:-1:2]) + 0.25 * (p[:, :, 0:-2:2] + p[:, :, 3::2])
    p = F.pad(cols[None], (0, 0, 1, 1), mode="replicate")[0]
    return 0.75 * (p[:, 1:-1:2] + p[:, 2:-1:2]) + 0.25 * (p[:, 0:-2:2] + p[:, 3::2])


class _Multigrid:
    """V-cycles for the hole's Laplacian ``L_h`` on one box."""

    SMOOTHING = 2
    OMEGA = 0.8
    COARSEST_SWEEPS = 16

    def __init__(self, hole: torch.Tensor, dtype: torch.dtype) -> None:
        self.grids = [_Grid(hole, dtype)]
        while min(self.grids[-1].shape) >= 8:
            coarse = _coarsen(self.grids[-1].hole)
            if not bool(coarse.any()):
                break
            self.grids.append(_Grid(coarse, dtype))

    def _smooth(self, g: _Grid, e: torch.Tensor | None, r: torch.Tensor, sweeps: int):
        for _ in range(sweeps):
            e = r * g.inv_degree if e is None else e.addcmul_(r - g.laplace(e), g.inv_degree)
        return e

    def cycle(self, r: torch.Tensor, depth: int = 0) -> torch.Tensor:
        """One symmetric V-cycle: an approximation of ``L_h⁻¹ r`` (``r`` zero off the hole)."""
        g = self.grids[depth]
        if depth == len(self.grids) - 1:
            return self._smooth(g, None, r, self.COARSEST_SWEEPS)
        e = self._smooth(g, None, r, self.SMOOTHING)
        coarse = self.grids[depth + 1]
        rc = _restrict(r - g.laplace(e), coarse.shape).mul_(coarse.mask)
        e = e + _prolong(self.cycle(rc, depth + 1), g.shape).mul_(g.mask)
        return self._smooth(g, e, r, self.SMOOTHING)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(1, 2), keepdim=True)


def _pcg(apply, precondition, x, r, iterations: int, rtol: float) -> torch.Tensor:
    """Preconditioned conjugate gradients, one independent system per channel.

    Stops when the largest residual is ``rtol`` times the starting one.
    """
    start = float(r.abs().max())
    if start == 0.0:
        return x
    z = precondition(r)
    p = z
    rz = _dot(r, z)
    for _ in range(iterations):
        ap = apply(p)
        alpha = rz / _dot(p, ap).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        if float(r.abs().max()) <= rtol * start:
            break
        z = precondition(r)
        rz_new = _dot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    return x


def _solve_box(
    values: torch.Tensor, hole: torch.Tensor, tension: float, iterations: int, rtol: float
) -> torch.Tensor:
    """The thin-plate fill of ``hole`` ``[H,W]`` in ``values`` ``[C,H,W]``: the hole's values.

    Starts from the harmonic fill (which is exact for a linear ramp, so a ramp
    needs no thin-plate step at all).
    """
    mg = _Multigrid(hole, values.dtype)
    g = mg.grids[0]
    known = values * (1 - g.mask)
    # Harmonic start: L_h x = Σ known neighbours.
    b = -_laplace(known).mul_(g.mask)
    x = mg.cycle(b)
    x = _pcg(g.laplace, mg.cycle, x, b - g.laplace(x), 6, 1e-3)

    def operator(u: torch.Tensor) -> torch.Tensor:
        lu = _laplace(u)
        out = _laplace(lu)
        if tension:
            out += tension * lu
        return out.mul_(g.mask)

    r = -operator(known + x)
    return _pcg(operator, lambda r: mg.cycle(mg.cycle(r)), x, r, iterations, rtol)


def _boxes(hole: torch.Tensor, margin: int) -> list[tuple[slice, slice]]:
    """Boxes, grown by ``margin`` and clipped, that together hold every hole pixel.

    Recursive cuts along rows or columns of the grown hole that are empty: the
    pieces' grown boxes never overlap, so each can be solved on its own.
    """
    h, w = hole.shape
    out: list[tuple[slice, slice]] = []
    grown = F.max_pool2d(hole[None, None].float(), 2 * margin + 1, stride=1, padding=margin)[0, 0]
    grown = grown > 0
    todo = [(0, h, 0, w)]
    while todo:
        y0, y1, x0, x1 = todo.pop()
        sub = grown[y0:y1, x0:x1]
        rows = torch.nonzero(sub.any(dim=1)).flatten()
        cols = torch.nonzero(sub.any(dim=0)).flatten()
        if rows.numel() == 0:
            continue
        y0, y1 = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
        x0, x1 = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
        sub = grown[y0:y1, x0:x1]
        split = False
        for axis in (0, 1):
            used = sub.any(dim=1 - axis)
            gaps = torch.nonzero(~used).flatten()
            if gaps.numel():
                k = int(gaps[0])
                if axis == 0:
                    todo += [(y0, y0 + k, x0, x1), (y0 + k, y1, x0, x1)]
                else:
                    todo += [(y0, y1, x0, x0 + k), (y0, y1, x0 + k, x1)]
                split = True
                break
        if not split:
            out.append((slice(y0, y1), slice(x0, x1)))
    return out


def smooth_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    tension: float | None = None,
    iterations: int = 30,
    rtol: float = 1e-4,
) -> torch.Tensor:
    """Fill ``hole`` ``[H,W]`` of ``image`` ``[H,W,C]``; returns the filled image.

    ``tension`` is ``λ`` at this resolution (default: ``TENSION_AT_512`` scaled to
    the frame, times ``OPEN_TENSION_FACTOR`` for holes that reach the frame edge;
    0 gives the pure biharmonic fill). ``iterations`` caps the
    conjugate-gradient steps; ``rtol`` is the residual reduction that ends them.
    """
    h, w, _c = image.shape
    if not bool(hole.any()):
        return image
    work = image.float() if image.dtype in (torch.float16, torch.bfloat16) else image
    out = work.clone()
    for ys, xs in _boxes(hole, _REACH):
        box_hole = hole[ys, xs]
        values = work[ys, xs].movedim(-1, 0).contiguous()
        lam = tension
        if lam is None:
            lam = TENSION_AT_512 * (512.0 / max(h, w)) ** 2
            edges = (hole[0, xs], hole[-1, xs], hole[ys, 0], hole[ys, -1])
            if max(float(e.float().mean()) for e in edges) >= 0.5:
                lam *= OPEN_TENSION_FACTOR
        x = _solve_box(values, box_hole, lam, iterations, rtol)
        filled = torch.where(box_hole, x.clamp(0, 1), values)
        out[ys, xs] = filled.movedim(0, -1)
    return out.to(image.dtype)
