"""Smooth fill: a thin-plate (biharmonic) membrane under slight tension.

The hole is the solution of ``L²u + λ·Lu = 0`` with the known pixels as boundary
values, where ``L`` is the 5-point Laplacian with reflecting frame edges. With
``λ = 0`` this is the biharmonic fill of ``skimage.restoration.inpaint_biharmonic``:
it continues gradients, which suits thin scratches but overshoots across big holes.
A little tension (``λ`` set per image size so the result does not depend on the
resolution) pulls large holes towards the harmonic fill and leaves thin ones alone.

The system lives only on the hole pixels: each level keeps index tables of the
hole, its neighbours and theirs, so a scratch across a 4K frame costs in
proportion to the scratch, not the frame. It is solved by conjugate gradients
preconditioned with a multigrid V-cycle (damped Jacobi smoothing, bilinear
prolongation, its transpose as restriction, the operator rediscretised on each
coarser hole, where a parent pixel is unknown if any child is, and a dense
Cholesky solve on the coarsest), which converges in a dozen or so iterations
whatever the hole size; a linear ramp comes back to float precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Tension at a 512 px frame; scaled by (512 / size)² so the fill is resolution independent.
TENSION_AT_512 = 0.003
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class _Level:
    """Index tables for the masked operator on one pyramid level (one image)."""

    def __init__(self, values: torch.Tensor, hole: torch.Tensor, tension: float) -> None:
        h, w, _c = values.shape
        dev = values.device
        self.shape = (h, w)
        self.values = values
        self.hole = hole
        self.tension = tension
        kernel = torch.ones(1, 1, 3, 3, device=dev)
        ring1 = F.conv2d(hole[None, None].float(), kernel, padding=1)[0, 0] > 0
        ring2 = F.conv2d(ring1[None, None].float(), kernel, padding=1)[0, 0] > 0
        self.free = torch.nonzero(hole.flatten()).flatten()
        s1 = torch.nonzero(ring1.flatten()).flatten()
        s2 = torch.nonzero(ring2.flatten()).flatten()
        pos2 = torch.full((h * w,), -1, dtype=torch.long, device=dev)
        pos2[s2] = torch.arange(s2.numel(), device=dev)
        pos1 = torch.full((h * w,), -1, dtype=torch.long, device=dev)
        pos1[s1] = torch.arange(s1.numel(), device=dev)
        self.s2 = s2
        self.free_in_s2 = pos2[self.free]
        self.s1_in_s2 = pos2[s1]
        self.nb1 = self._neighbours(s1, pos2, w, h)
        self.free_in_s1 = pos1[self.free]
        self.nb_free = self._neighbours(self.free, pos1, w, h)
        deg = (self.nb_free != self.free_in_s1.unsqueeze(1)).sum(dim=1).to(values.dtype)
        self.degree = deg.unsqueeze(1)
        self.diag = (deg * deg + deg + tension * deg).unsqueeze(1)
        self.n1 = s1.numel()
        self.s1 = s1

    @staticmethod
    def _neighbours(at: torch.Tensor, pos: torch.Tensor, w: int, h: int) -> torch.Tensor:
        """``[N,4]`` positions of each pixel's neighbours; off-frame ones point to itself."""
        y, x = at // w, at % w
        cols = []
        for dy, dx in _NEIGHBOURS:
            ny, nx = y + dy, x + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            q = torch.where(inside, ny.clamp(0, h - 1) * w + nx.clamp(0, w - 1), at)
            cols.append(pos[q])
        return torch.stack(cols, dim=1)

    def laplace(self, x: torch.Tensor) -> torch.Tensor:
        """``L x`` at the hole with ``x`` there and 0 on the known pixels."""
        u = x.new_zeros(self.n1, x.shape[1])
        u[self.free_in_s1] = x
        return 4 * x - u[self.nb_free].sum(dim=1)

    def apply(self, x: torch.Tensor, homogeneous: bool) -> torch.Tensor:
        """``(L² + λL) u`` at the hole, with ``u = x`` there and the known values (or 0) elsewhere."""
        flat = self.values.reshape(-1, self.values.shape[-1])
        u = x.new_zeros(self.s2.numel(), x.shape[1]) if homogeneous else flat[self.s2].clone()
        u[self.free_in_s2] = x
        u1 = u[self.s1_in_s2]
        lu = 4 * u1 - u[self.nb1].sum(dim=1)
        lu_free = lu[self.free_in_s1]
        return 4 * lu_free - lu[self.nb_free].sum(dim=1) + self.tension * lu_free


def _downsample(hole: torch.Tensor) -> torch.Tensor:
    """A parent pixel is unknown only if all its children are (so corrections stay inside)."""
    return -F.max_pool2d(-hole[None, None].float(), 2, ceil_mode=True)[0, 0] > 0


class _Transfer:
    """Bilinear prolongation from a coarse level's hole to a fine one's, and back."""

    def __init__(self, fine: _Level, coarse: _Level) -> None:
        h, w = fine.shape
        hc, wc = coarse.shape
        dev = fine.free.device
        pos = torch.full((hc * wc + 1,), -1, dtype=torch.long, device=dev)
        pos[coarse.free] = torch.arange(coarse.free.numel(), device=dev)
        n = coarse.free.numel()
        pos[pos < 0] = n  # a zero slot: the correction vanishes on known pixels
        y, x = fine.free // w, fine.free % w
        py, px = y // 2, x // 2
        ny = torch.where(y % 2 == 0, py - 1, py + 1)
        nx = torch.where(x % 2 == 0, px - 1, px + 1)
        index, weight = [], []
        for cy, wy in ((py, 0.75), (ny, 0.25)):
            for cx, wx in ((px, 0.75), (nx, 0.25)):
                inside = (cy >= 0) & (cy < hc) & (cx >= 0) & (cx < wc)
                flat = torch.where(inside, cy.clamp(0, hc - 1) * wc + cx.clamp(0, wc - 1), hc * wc)
                index.append(pos[flat])
                weight.append(torch.full_like(y, 0, dtype=fine.diag.dtype) + wy * wx)
        self.index = torch.stack(index, dim=1)
        self.weight = torch.stack(weight, dim=1).unsqueeze(-1)
        self.n = n

    def prolong(self, e: torch.Tensor) -> torch.Tensor:
        padded = torch.cat((e, e.new_zeros(1, e.shape[1])))
        return (padded[self.index] * self.weight).sum(dim=1)

    def restrict(self, r: torch.Tensor) -> torch.Tensor:
        c = r.shape[1]
        out = r.new_zeros(self.n + 1, c)
        contrib = (r.unsqueeze(1) * self.weight).reshape(-1, c)
        out.index_add_(0, self.index.reshape(-1), contrib)
        return out[: self.n]


class _Multigrid:
    """The hole's operator, and a multigrid V-cycle for its Laplacian part.

    The thin-plate operator restricted to the hole is ``L_h² + B + λL_h``, with
    ``L_h`` the Laplacian of the hole under zero boundary values and ``B`` a small
    term on the pixels next to the boundary. Two V-cycles of ``L_h`` (whose
    multigrid, unlike the biharmonic one, converges with bilinear transfers)
    therefore make a good preconditioner for it.
    """

    SMOOTHING = 2
    OMEGA = 0.8
    COARSEST = 1024

    def __init__(self, values: torch.Tensor, hole: torch.Tensor, tension: float) -> None:
        self.levels = [_Level(values, hole, tension)]
        self.transfers: list[_Transfer] = []
        zeros = values.new_zeros(1, 1, values.shape[-1])
        while self.levels[-1].free.numel() > self.COARSEST:
            coarse_hole = _downsample(self.levels[-1].hole)
            if not bool(coarse_hole.any()) or min(coarse_hole.shape) < 4:
                break
            level = _Level(zeros.expand(*coarse_hole.shape, -1), coarse_hole, 0.0)
            self.transfers.append(_Transfer(self.levels[-1], level))
            self.levels.append(level)
        last = self.levels[-1]
        self.cholesky = None
        if last.free.numel() <= 4 * self.COARSEST:
            eye = torch.eye(last.free.numel(), dtype=values.dtype, device=values.device)
            dense = last.laplace(eye)
            self.cholesky = torch.linalg.cholesky(0.5 * (dense + dense.T))

    def cycle(self, r: torch.Tensor, depth: int = 0) -> torch.Tensor:
        """One symmetric V-cycle: an approximation of ``L_h⁻¹ r``."""
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            if self.cholesky is not None:
                return torch.cholesky_solve(r, self.cholesky)
            return self._smooth(level, r.new_zeros(r.shape), r, 40)
        e = self._smooth(level, r.new_zeros(r.shape), r, self.SMOOTHING)
        residual = r - level.laplace(e)
        transfer = self.transfers[depth]
        e = e + transfer.prolong(self.cycle(transfer.restrict(residual), depth + 1))
        return self._smooth(level, e, r, self.SMOOTHING)

    def _smooth(self, level: _Level, e: torch.Tensor, r: torch.Tensor, sweeps: int) -> torch.Tensor:
        for _ in range(sweeps):
            e = e + self.OMEGA * (r - level.laplace(e)) / level.degree
        return e

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        return self.cycle(self.cycle(r))

    def harmonic(self, iterations: int) -> torch.Tensor:
        """The membrane (Laplace) fill, a close start for the thin-plate solve."""
        level = self.levels[0]
        flat = level.values.reshape(-1, level.values.shape[-1])
        u = flat[level.s1].clone()
        u[level.free_in_s1] = 0
        b = u[level.nb_free].sum(dim=1)
        x = self.cycle(b)
        r = b - level.laplace(x)
        z = self.cycle(r)
        p = z.clone()
        rz = (r * z).sum(dim=0)
        for _ in range(iterations):
            ap = level.laplace(p)
            alpha = rz / (p * ap).sum(dim=0).clamp_min(1e-30)
            x = x + alpha * p
            r = r - alpha * ap
            z = self.cycle(r)
            rz_new = (r * z).sum(dim=0)
            p = z + (rz_new / rz.clamp_min(1e-30)) * p
            rz = rz_new
        return x

    def solve(self, x: torch.Tensor, iterations: int, rtol: float) -> torch.Tensor:
        """Conjugate gradients on the finest level, preconditioned by :meth:`cycle`."""
        level = self.levels[0]
        r = -level.apply(x, homogeneous=False)
        start = r.abs().max().clamp_min(1e-12)
        z = self.precondition(r)
        p = z.clone()
        rz = (r * z).sum(dim=0)
        for _ in range(iterations):
            ap = level.apply(p, homogeneous=True)
            alpha = rz / (p * ap).sum(dim=0).clamp_min(1e-30)
            x = x + alpha * p
            r = r - alpha * ap
            if float(r.abs().max()) <= rtol * float(start):
                break
            z = self.precondition(r)
            rz_new = (r * z).sum(dim=0)
            p = z + (rz_new / rz.clamp_min(1e-30)) * p
            rz = rz_new
        return x


def smooth_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    tension: float | None = None,
    iterations: int = 30,
    rtol: float = 1e-4,
) -> torch.Tensor:
    """Fill ``hole`` ``[H,W]`` of ``image`` ``[H,W,C]``; returns the filled image.

    ``tension`` is ``λ`` at this resolution (default: ``TENSION_AT_512`` scaled to
    the frame; 0 gives the pure biharmonic fill). ``iterations`` caps the
    conjugate-gradient steps; ``rtol`` is the residual reduction that ends them.
    """
    h, w, _c = image.shape
    if not bool(hole.any()):
        return image
    work = image.float() if image.dtype in (torch.float16, torch.bfloat16) else image
    if tension is None:
        tension = TENSION_AT_512 * (512.0 / max(h, w)) ** 2
    solver = _Multigrid(work, hole, tension)
    x = solver.solve(solver.harmonic(6), iterations, rtol)
    out = work.clone().reshape(-1, work.shape[-1])
    out[solver.levels[0].free] = x.clamp(0, 1)
    return out.reshape(work.shape).to(image.dtype)
