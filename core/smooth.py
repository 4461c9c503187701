"""Smooth fill: a thin-plate (biharmonic) membrane under slight tension.

The hole is the solution of ``L²u + λ·Lu = 0`` with the known pixels as boundary
values, where ``L`` is the 5-point Laplacian with reflecting frame edges. With
``λ = 0`` this is the biharmonic fill of ``skimage.restoration.inpaint_biharmonic``:
it continues gradients, which suits thin scratches but overshoots across big holes.
A little tension (``λ`` set per image size so the result does not depend on the
resolution) pulls large holes towards the harmonic fill, and more of it holes open
to the frame and strokes (see ``STROKE_DEPTH``); closed scratches take none. Each hole
component is then clamped, channel by channel, to the range of the known pixels
that touch it (:class:`_Bounds`), so no overshoot goes past its border's values.

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

A hole that is one rectangle (a box drawn in an editor, an outpaint band, a big
block at half size) needs no grids: along each side the operator is a small 1-D
matrix, so the harmonic start is exact and the thin-plate preconditioner nearly
so in the basis of their eigenvectors (:class:`_Rectangle`), and CG takes 6-8
steps (1536 px centred rectangle: 0.22 s to 0.12; outpaint at 512: 0.28 to 0.08).

Sparse masks (strokes, scratches) fill a box only thinly, so there the same
solve runs on the box's ``TILE``-pixel tiles that hold hole, each stored as a
slice of a ``[C,N,t,t]`` stack: stencils read their neighbours through a halo
gathered by one flat index, coarser levels halve the tiles (same list), and
once tiles are ``TILE_DENSE`` pixels the rest of the hierarchy is dense again.
The V-cycle is the dense one to rounding (a test checks it), so both paths
converge to the same discrete solution. CG stops when the residual is ``rtol``
of the right-hand side's (see ``START_FACTOR``), or no value moves by more
than ``rtol / 10``.

Thin holes (every pixel within ``THIN_DEPTH`` of a known one: scratches, strokes
up to 32 px wide) need no iterations: the system over the hole's own pixels is
assembled as a sparse matrix and factorised (:func:`_solve_thin`, SuperLU on the
CPU). Across a thin hole the factor stays narrow, so it costs what the hole
covers (1536 px scratches: a third of the grids' time, the same solution). A
thin hole of more than ``THIN_WHOLE`` pixels (a fence to remove) is factorised
in overlapping pieces: along a thin hole a cut's effect dies within a few of the
hole's depths, so each piece is solved on itself grown by that much and keeps
its own pixels (2048 px fence: 29 s and 3.7 GB to 7.7 s and 0.5 GB). Thin holes
in separate boxes near each other (``THIN_CELL``) are solved as one system, theirs
side by side: a dust mask of 16384 specks at 1024 px took 9.4 s as one solve each,
0.7 s so.

Deep holes (some pixel more than ``COARSE_DEPTH`` from known ones: big blocks,
outpaint bands), and boxes of more than ``COARSE_PIXELS`` hole pixels that are
not thin (wide strokes across a 4K frame), are filled at half size, recursively
(:func:`_coarse_fill`), and scaled back up; at full size only their rim, the pixels within
``RIM_DEPTH`` of known ones, is solved, as a thin hole whose inner side is the
upsampled fill. The half-size problem sees the border's colours and slopes
averaged over 2 px: on smooth content it comes close to the full-size solve (a
test bounds the gap); off a textured border it continues that border's mean
rather than its last pixel's slope (bench: the big holes gained 0.3-1.6 dB).
A 4K outpaint went from 21 s to about 1.7 s, single-threaded.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import eigh_tridiagonal
from scipy.ndimage import distance_transform_cdt
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import splu

from .errors import UncropError
from .inputs import at_least_float32
from .masks import box_of, dilate_square, erode_square, label_islands
from .progress import ProgressHook, or_null

# Tension at a 512 px frame; scaled by (512 / size)² so the fill is resolution independent.
# Closed scratches (no pixel more than STROKE_DEPTH[0] from known ones) take none:
# across them gradients have no room to run away, and the pure biharmonic scored
# best there on the bench (astronaut scratches).
TENSION_AT_512 = 0.003
# Holes open to the frame (covering at least half their box's side along a frame
# edge, as in outpainting) extrapolate rather than interpolate:
# gradients continued that far overshoot, so they get this much more tension.
OPEN_TENSION_FACTOR = 10.0
# Closed holes whose deepest pixel is within these depths (px at a 512 px frame, scaled
# with it) are strokes, a brush's width across: the biharmonic continues the slopes of
# both sides into the middle, where they meet in a bulge (a bright grain by a stroke's
# edge, or a little known island inside it, swells into a pale blob), so they take the
# open holes' tension too. On the bench's brush strokes over 19 photos from skimage.data
# at 512 px: +0.30 dB on average, 18 photos better, 1 worse (colorwheel, a synthetic
# gradient, -2.6 dB); astronaut at 1536 +0.48 dB, and 1.3x faster (CG converges sooner).
# Deeper holes keep the frame's tension: with the strokes', the bench's centred
# rectangles over the 19 photos gained 0.27 dB (10 %) and 0.62 dB (30 %) on average
# but lost up to 2.8 dB on 5 and 3 of them, astronaut's and coffee's 10 % among them
# (1.1 and 0.2 dB, under the biharmonic fill there).
STROKE_DEPTH = (6, 32)
_REACH = 2  # the thin-plate stencil reaches two pixels
# The harmonic start (exact for a linear ramp once converged): a few CG steps.
HARMONIC_ITERATIONS = 6
HARMONIC_RTOL = 1e-3
# The thin-plate CG stops at rtol times the right-hand side's largest value, but
# not before it has cut the start's residual 1 / (rtol START_FACTOR)-fold (so a
# ramp, whose harmonic start is nearly right, still comes back exactly).
START_FACTOR = 100.0
# Past this the fill is the membrane (harmonic) one: at 1e6 it is within 0.0002/255 of
# 1e12's on a photo's deep hole and outpaint band; near float32's limit (1e38) the
# half-size solve's 4x tension overflowed to inf and the fill came out NaN.
MAX_TENSION = 1e6


def _laplace(x: torch.Tensor) -> torch.Tensor:
    """5-point ``4x - Σ neighbours`` of ``[C,H,W]`` with reflecting (replicated) edges.

    On a box cut from a larger frame the replicated box edge is wrong only on the
    box's own outer ring, which no hole equation reads (the box is grown by
    :data:`_REACH`); on a frame edge it is the reflecting boundary. Off the edge,
    the neighbour is the pixel itself.
    """
    p = F.pad(x[None], (1, 1, 1, 1), mode="replicate")[0]
    out = p[:, :-2, 1:-1] + p[:, 2:, 1:-1]
    out += p[:, 1:-1, :-2]
    out += p[:, 1:-1, 2:]
    return out.mul_(-1).add_(x, alpha=4)


def _degree(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """4 less the off-box neighbours: the diagonal of :func:`_laplace` on an ``h x w`` box."""
    deg = torch.full((h, w), 4.0, dtype=dtype, device=device)
    deg[0, :] -= 1
    deg[-1, :] -= 1
    deg[:, 0] -= 1
    deg[:, -1] -= 1
    return deg


class _Grid:
    """One multigrid level: the hole as a 0/1 mask and the Jacobi diagonal."""

    def __init__(self, hole: torch.Tensor, dtype: torch.dtype) -> None:
        self.hole = hole
        self.mask = hole.to(dtype)[None]
        self.shape = hole.shape
        # 1 / degree, where the degree is 4 less the off-frame neighbours; the box
        # edges of coarse levels are treated the same way, where the hole never is
        # unless that edge is the frame's.
        deg = _degree(*hole.shape, dtype, hole.device)
        self.inv_degree = (_Multigrid.OMEGA * self.mask / deg.clamp_min(1)).contiguous()

    def laplace(self, e: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """``L_h e`` for ``e`` zero outside the hole (result zero there too, unless not
        ``masked``)."""
        out = _laplace(e)
        return out.mul_(self.mask) if masked else out


def _coarsen(hole: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-hole[None, None].float(), 2, ceil_mode=True)[0, 0] > 0


def _up2(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear upsampling by 2 along ``dim`` of ``p``, which has one pixel of halo there,
    over 3/4: each new pixel is its parent plus a third of the nearer neighbour."""
    n = p.shape[dim] - 2
    mid = p.narrow(dim, 1, n)
    shape = list(p.shape)
    shape[dim] = 2 * n
    out = p.new_empty(shape)
    pairs = out.unflatten(dim, (n, 2))
    side = dim if dim < 0 else dim + 1  # the pair's axis
    torch.add(mid, p.narrow(dim, 0, n), alpha=1 / 3, out=pairs.select(side, 0))
    torch.add(mid, p.narrow(dim, 2, n), alpha=1 / 3, out=pairs.select(side, 1))
    return out


def _down2(p: torch.Tensor, dim: int) -> torch.Tensor:
    """The transpose of :func:`_up2`: ``p`` has an even size plus one pixel of halo on each
    side along ``dim``; each coarse pixel sums its two children and a third of the next
    two out."""
    n = (p.shape[dim] - 2) // 2
    side = dim if dim < 0 else dim + 1  # the pair's axis

    def every_other(start: int, which: int) -> torch.Tensor:
        return p.narrow(dim, start, 2 * n).unflatten(dim, (n, 2)).select(side, which)

    out = every_other(1, 0) + every_other(1, 1)
    out.add_(every_other(0, 0), alpha=1 / 3)
    out.add_(every_other(2, 1), alpha=1 / 3)
    return out


def _prolong(e: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear (weights 3/4, 1/4) from a coarse ``[C,h,w]`` to ``shape``, edges replicated."""
    p = F.pad(e[None], (1, 1, 1, 1), mode="replicate")[0]
    return _up2(_up2(p, -2), -1).mul_(0.5625)[:, : shape[0], : shape[1]]


def _restrict(r: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The transpose of :func:`_prolong`: fine ``[C,H,W]`` to the coarse ``shape``."""
    _c, h, w = r.shape
    hc, wc = shape
    r = F.pad(r, (0, 2 * wc - w, 0, 2 * hc - h))
    p = F.pad(r[None], (1, 1, 1, 1), mode="replicate")[0]
    return _down2(_down2(p, -1), -2).mul_(0.5625)


def _jacobi(level, e: torch.Tensor | None, r: torch.Tensor, sweeps: int) -> torch.Tensor:
    """Damped Jacobi sweeps on ``L_h e = r`` of a multigrid level (dense or tiled), from ``e``
    (zero when None)."""
    for _ in range(sweeps):
        if e is None:
            e = r * level.inv_degree
        else:
            # inv_degree is zero off the hole, so the Laplacian needs no mask here.
            e = e.addcmul_(r - level.laplace(e, masked=False), level.inv_degree)
    return e


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

    def cycle(self, r: torch.Tensor, depth: int = 0) -> torch.Tensor:
        """One symmetric V-cycle: an approximation of ``L_h⁻¹ r`` (``r`` zero off the hole)."""
        g = self.grids[depth]
        if depth == len(self.grids) - 1:
            return _jacobi(g, None, r, self.COARSEST_SWEEPS)
        e = _jacobi(g, None, r, self.SMOOTHING)
        coarse = self.grids[depth + 1]
        rc = _restrict(r - g.laplace(e), coarse.shape).mul_(coarse.mask)
        e = e + _prolong(self.cycle(rc, depth + 1), g.shape).mul_(g.mask)
        return _jacobi(g, e, r, self.SMOOTHING)


def _dot(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return (a * b).sum(dim=dims, keepdim=True)


def _never() -> None:
    """A cancellation check that never cancels."""


def _pcg(
    apply,
    precondition,
    x: torch.Tensor,
    r: torch.Tensor,
    iterations: int,
    rtol: float,
    step: float = 0.0,
    scale: float | None = None,
    dims: tuple[int, ...] = (1, 2),
    check: Callable[[], None] = _never,
) -> torch.Tensor:
    """Preconditioned conjugate gradients, one independent system per channel.

    ``dims`` are the dimensions summed over (all but the channels'). Stops when
    the largest residual is ``rtol`` times ``scale`` (default: the starting
    residual), or when no value moved by more than ``step`` in the last step.
    ``check`` is called before each step (it raises to cancel).
    """
    start = float(r.abs().max())
    if start == 0.0:
        return x
    if scale is not None:
        start = scale
    z = precondition(r)
    p = z
    rz = _dot(r, z, dims)
    for _ in range(iterations):
        check()
        ap = apply(p)
        alpha = rz / _dot(p, ap, dims).clamp_min(1e-30)
        x = x.addcmul_(alpha, p)
        r = r.addcmul_(alpha, ap, value=-1)
        if float(r.abs().max()) <= rtol * start:
            break
        if step and float((alpha * p.abs().amax(dim=dims, keepdim=True)).max()) <= step:
            break
        z = precondition(r)
        rz_new = _dot(r, z, dims)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    return x


def _solve_box(
    values: torch.Tensor,
    hole: torch.Tensor,
    tension: float,
    iterations: int,
    rtol: float,
    check: Callable[[], None] = _never,
) -> torch.Tensor:
    """The thin-plate fill of ``hole`` ``[H,W]`` in ``values`` ``[C,H,W]``: the hole's values."""
    mask = hole.to(values.dtype)[None]
    known = values * (1 - mask)

    def operator(u: torch.Tensor) -> torch.Tensor:
        lu = _laplace(u)
        out = _laplace(lu)
        if tension:
            out += tension * lu
        return out.mul_(mask)

    rhs = -operator(known)
    # Harmonic start: L_h x = Σ known neighbours (exact for a linear ramp).
    b = -_laplace(known).mul_(mask)
    rect = _rectangle(hole)
    if rect is not None:
        precondition = _Rectangle(hole.shape, rect, tension, values.dtype, values.device)
        x = precondition.harmonic(b)
        rtol *= RECT_RTOL_FACTOR
    else:
        mg = _Multigrid(hole, values.dtype)
        x = _harmonic_start(mg.grids[0].laplace, mg.cycle, b, (1, 2), check)
        precondition = _two_cycles(mg)
    return _thin_plate_cg(operator, precondition, x, rhs, iterations, rtol, (1, 2), check)


def _harmonic_start(laplace, cycle, b, dims: tuple[int, ...], check) -> torch.Tensor:
    """The harmonic fill ``L_h x = b`` (exact for a linear ramp): a few CG steps
    preconditioned with one V-cycle, from one V-cycle."""
    x = cycle(b)
    return _pcg(
        laplace,
        cycle,
        x,
        b - laplace(x),
        HARMONIC_ITERATIONS,
        HARMONIC_RTOL,
        dims=dims,
        check=check,
    )


def _two_cycles(mg) -> Callable[[torch.Tensor], torch.Tensor]:
    """The thin-plate preconditioner of a (dense or tiled) multigrid: two V-cycles of the
    hole's Laplacian, about ``L_h⁻²``, whose inverse is the thin-plate operator up to a
    term on the pixels next to the border."""
    return lambda r: mg.cycle(mg.cycle(r))


def _thin_plate_cg(
    operator, precondition, x, rhs, iterations: int, rtol: float, dims: tuple[int, ...], check
) -> torch.Tensor:
    """CG on the thin-plate system ``operator x = rhs`` from ``x`` (see ``START_FACTOR`` for
    when it stops)."""
    r = rhs - operator(x)
    scale = min(float(rhs.abs().max()), START_FACTOR * float(r.abs().max()))
    return _pcg(operator, precondition, x, r, iterations, rtol, 0.1 * rtol, scale, dims, check)


# ---- rectangular holes: a preconditioner that is nearly the inverse

# Rectangles with a longer side than this take the multigrid: the 1-D eigenvectors
# cost the side cubed (1024: 0.14 s), and each step multiplies by them.
RECT_SIDE = 1024
# With a near-exact preconditioner the residual falls about 10-fold a step while the
# error lags behind: stopping at rtol left fills up to 2.5/255 off the converged one
# (the multigrid's stop: 0.6/255). A hundredth of it leaves 0.01/255, for 1-2 steps.
RECT_RTOL_FACTOR = 0.01


def _rectangle(hole: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` when ``hole`` is one filled rectangle no longer than
    ``RECT_SIDE``, else None."""
    rows, cols = box_of(hole)
    y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
    if max(y1 - y0, x1 - x0) > RECT_SIDE or int(hole.sum()) != (y1 - y0) * (x1 - x0):
        return None
    return y0, y1, x0, x1


@functools.lru_cache(maxsize=8)
def _axis(n: int, known_before: bool, known_after: bool) -> tuple[torch.Tensor, ...]:
    """One side of a rectangular hole, ``n`` long (float64): the eigenvalues and
    eigenvectors of ``L₁``, and the square roots of the eigenvalues and the
    eigenvectors of ``M = L₁² + E``, the thin-plate operator along that side.

    ``L₁`` is the 1-D ``2x - neighbours``, with a reflecting end (diagonal 1) where the
    side meets the frame; ``E`` is 1 at an end with known pixels beyond it, where
    ``L(Lx)`` reads ``Lx`` on the known pixel next to the hole, ``-x`` there.
    """
    diag = np.full(n, 2.0)
    diag[0] -= not known_before
    diag[-1] -= not known_after
    mu, vl = eigh_tridiagonal(diag, np.full(n - 1, -1.0))
    lap = np.diag(diag) - np.eye(n, k=1) - np.eye(n, k=-1)
    m = lap @ lap
    m[0, 0] += known_before
    m[-1, -1] += known_after
    w, vm = np.linalg.eigh(m)
    return tuple(torch.from_numpy(a) for a in (mu, vl, np.sqrt(w.clip(min=0)), vm))


class _Rectangle:
    """Near-exact inverses for a rectangular hole: the harmonic start and the thin-plate
    preconditioner, each four matrix products.

    On a rectangle ``m x n`` the hole's Laplacian is the Kronecker sum ``L_m⊕L_n``
    (``L`` and ``E`` as in :func:`_axis`): its inverse in the basis of the two sides'
    eigenvectors is exact. The thin-plate system is ``A = (L_m⊕L_n)² + λ(L_m⊕L_n) +
    E_m⊕E_n``, which is ``M_m⊕M_n + 2 L_m⊗L_n + λ(L_m⊕L_n)``. With ``K = √M`` along
    each side, ``S = K_m⊕K_n`` gives ``S² + λS = M_m⊕M_n + 2 K_m⊗K_n + λS``, which
    differs from ``A`` only where ``K`` and ``L`` do, near the ends: CG preconditioned
    with its inverse converges in 6-8 steps (a 246 px square: 0.02 s, the
    multigrid 0.14 s).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        rect: tuple[int, int, int, int],
        tension: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        h, w = shape
        self.y0, self.y1, self.x0, self.x1 = rect
        sides = (
            _axis(self.y1 - self.y0, self.y0 > 0, self.y1 < h),
            _axis(self.x1 - self.x0, self.x0 > 0, self.x1 < w),
        )
        (mu_y, ly, k_y, my), (mu_x, lx, k_x, mx) = (
            [t.to(dtype=dtype, device=device) for t in side] for side in sides
        )
        self.laplace = (ly, lx, 1 / (mu_y[:, None] + mu_x[None, :]))
        s = k_y[:, None] + k_x[None, :]
        self.thin_plate = (my, mx, 1 / (s * s + tension * s))

    def _apply(self, bases, r: torch.Tensor) -> torch.Tensor:
        vy, vx, inverse = bases
        inside = r[:, self.y0 : self.y1, self.x0 : self.x1]
        out = torch.zeros_like(r)
        out[:, self.y0 : self.y1, self.x0 : self.x1] = vy @ ((vy.T @ inside @ vx) * inverse) @ vx.T
        return out

    def harmonic(self, b: torch.Tensor) -> torch.Tensor:
        """``L_h⁻¹ b`` (``b`` zero off the hole)."""
        return self._apply(self.laplace, b)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """The thin-plate preconditioner: ``(S² + λS)⁻¹ r``."""
        return self._apply(self.thin_plate, r)


# ---- thin holes: a sparse direct solve on the hole's own pixels

# Holes no deeper than this (every hole pixel at most this far from a known one,
# in the square metric, the frame edge not counting as known) take _solve_thin.
# The factor widens with the depth: at 16, long straight strips (a grid's best
# case) take 1.5x the grids' time (a 4K frame of 32 px strips: 7.3 s vs 5.0 s,
# one thread), curvy scratches a third; at 24, 48 px strips took 1.7x (13.1 s vs 7.7).
THIN_DEPTH = 16
# The rim of a hole filled inside at half size: the pixels within this of known ones.
RIM_DEPTH = 4


def _deep(hole: torch.Tensor, depth: int) -> torch.Tensor:
    """Hole pixels farther than ``depth`` from every known pixel (off the frame is not known)."""
    return erode_square(hole, depth, beyond=True)


def _laplace_rows(at: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of :func:`_laplace` at the flat pixels ``at`` of an ``h x w`` frame.

    ``[N,5]`` columns (the pixel above, left, itself, right, below: ascending) and
    values (-1 at each neighbour, the number of neighbours at the pixel; off the
    frame the column is -1 and the value 0, the reflecting edge).
    """
    ys, xs = np.divmod(at, w)
    cols = np.stack([at - w, at - 1, at, at + 1, at + w], 1)
    off = np.stack([ys == 0, xs == 0, np.zeros_like(at, dtype=bool), xs == w - 1, ys == h - 1], 1)
    cols[off] = -1
    vals = np.where(off, 0.0, -1.0)
    vals[:, 2] = 4 - off.sum(1)
    return cols, vals


def _csr(cols: np.ndarray, vals: np.ndarray, width: int) -> csr_matrix:
    """Sparse matrix of ``[N,K]`` per-row columns (ascending, -1 for none) and values."""
    keep = cols >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
    return csr_matrix((vals[keep], cols[keep], indptr), shape=(cols.shape[0], width))


# A thin hole of more pixels than this is solved in overlapping square pieces of
# THIN_PIECE px. One factorisation costs more per pixel the bigger a meshed hole is
# (a fence: 6 px wires every 24 px, one thread: 3.0 us a pixel at 256 px, 7.0 at
# 1024, 15 at 2048, where it took 29 s and 3.7 GB); in pieces the cost per pixel
# stays flat (2048 px: 7.7 s, 0.5 GB). On scratches and strokes, whose factor
# stays narrow anyway, the pieces cost what the whole does.
THIN_WHOLE = 250_000
THIN_PIECE = 256
# Each piece is solved on itself grown by this times the hole's depth (+ 8 px), the
# hole cut at the grown piece's edge as at the frame's, and only its own pixels kept.
# Along a thin hole the cut's effect decays by e every half depth or so: on the
# fence and on 20 px strokes the pieces land within 0.005/255 of the whole solve.
THIN_HALO_FACTOR = 5


def _solve_thin(
    image: torch.Tensor, hole: torch.Tensor, tension: float, check: Callable[[], None] = _never
) -> torch.Tensor:
    """:func:`_factorise_thin`, in overlapping pieces when the hole has more than
    ``THIN_WHOLE`` pixels; ``check`` raises to cancel between pieces."""
    hole_np = hole.cpu().numpy()
    if int(hole_np.sum()) <= THIN_WHOLE:
        return _factorise_thin(image, hole, tension)
    h, w, c = image.shape
    depth = int(distance_transform_cdt(hole_np, metric="chessboard").max())
    halo = THIN_HALO_FACTOR * depth + 8
    step = max(THIN_PIECE, 6 * halo)  # the grown piece at most twice its area
    out = image.new_zeros(h, w, c)
    for y in range(0, h, step):
        for x in range(0, w, step):
            if not hole_np[y : y + step, x : x + step].any():
                continue
            check()
            ys = slice(max(0, y - halo), min(h, y + step + halo))
            xs = slice(max(0, x - halo), min(w, x + step + halo))
            part = image.new_zeros(ys.stop - ys.start, xs.stop - xs.start, c)
            part[hole[ys, xs]] = _factorise_thin(image[ys, xs], hole[ys, xs], tension)
            y0, x0 = y - ys.start, x - xs.start
            out[y : y + step, x : x + step] = part[y0 : y0 + step, x0 : x0 + step]
    return out[hole]


def _factorise_thin(image: torch.Tensor, hole: torch.Tensor, tension: float) -> torch.Tensor:
    """:func:`_solve_box` for a hole no deeper than ``THIN_DEPTH``, on its own pixels.

    ``image`` is ``[H,W,C]`` (a box, whose edges are the frame's or at least
    :data:`_REACH` from the hole); returns the hole's ``[N,C]`` values in
    ``torch.nonzero(hole)`` order.

    The system ``(L_2 + λ S) L_1 u = -(L_2 + λ S) L_k`` is assembled as a sparse
    matrix over the hole's pixels (``L_1`` takes the Laplacian at the hole and its
    4-neighbours from the unknowns, ``L_k`` from the known pixels; ``L_2`` the
    Laplacian of that at the hole, ``S`` picks the hole's own rows) and factorised
    (SuperLU with a symmetric minimum-degree ordering). Across a thin hole the
    factor stays narrow, so this costs what the hole covers, to float64 precision,
    where iterations would cost the hole's depth squared. It runs on the CPU, as
    torch has no sparse factorisation: only the hole's pixels and their
    neighbours move.
    """
    h, w, c = image.shape
    hole_np = hole.cpu().numpy()
    near_np = hole_np.copy()  # the hole and its 4-neighbours: where L_1 is read
    near_np[1:] |= hole_np[:-1]
    near_np[:-1] |= hole_np[1:]
    near_np[:, 1:] |= hole_np[:, :-1]
    near_np[:, :-1] |= hole_np[:, 1:]
    at, near = np.flatnonzero(hole_np), np.flatnonzero(near_np)
    n, m = at.size, near.size
    number = np.full(h * w, -1, dtype=np.int64)  # unknown's number, -1 at known pixels
    number[at] = np.arange(n)

    cols, vals = _laplace_rows(near, h, w)
    unknown = np.where(cols >= 0, number[cols], -1)
    l1 = _csr(unknown, vals, n)
    rows, slot = np.nonzero((cols >= 0) & (unknown < 0))  # the known pixels L_1 reads
    py, px = (torch.from_numpy(v).to(image.device) for v in np.divmod(cols[rows, slot], w))
    part = image[py, px].cpu().double().numpy() * vals[rows, slot, None]
    lk = np.stack([np.bincount(rows, part[:, k], minlength=m) for k in range(c)], 1)

    number[near] = np.arange(m)  # now each near pixel's row of L_1
    cols, vals = _laplace_rows(at, h, w)
    cols = np.where(cols >= 0, number[cols], -1)
    vals[:, 2] += tension
    l2 = _csr(cols, vals, m)  # L_2 + λ S
    system = l2 @ l1  # symmetric: its transpose is its CSC form
    lu = splu(
        system.T, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
    )
    x = lu.solve(-(l2 @ lk))
    return torch.from_numpy(x).to(image.dtype).to(image.device)  # MPS has no float64


# ---- the same solve on the tiles of the box that hold hole (sparse masks)

TILE = 32  # side of the finest tiles
TILE_DENSE = 4  # tile side at which the hierarchy goes back to a dense grid
TILED_BELOW = 0.5  # use tiles when the tiles with hole cover less of the box than this


def _windows(canvas: torch.Tensor, t: int, halo: int, ny: int, nx: int) -> torch.Tensor:
    """``[ny, nx, C, t + 2 halo, t + 2 halo]`` view of the tiles of ``canvas`` with their halo."""
    s0, s1, s2 = canvas.stride()
    side = t + 2 * halo
    return canvas.as_strided(
        (ny, nx, canvas.shape[0], side, side), (t * s1, t * s2, s0, s1, s2), canvas.storage_offset()
    )


def _laplace_tiles(p: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    """:func:`_laplace` of tiles ``[C,N,m+2,m+2]`` (one pixel of halo) on their ``m x m`` inside.

    ``deg`` ``[1,N,m,m]`` is 4 less the off-box neighbours, whose values are zero
    in the halo: the same as the replicated edge of the dense grid.
    """
    out = p[:, :, :-2, 1:-1] + p[:, :, 2:, 1:-1]
    out += p[:, :, 1:-1, :-2]
    out += p[:, :, 1:-1, 2:]
    return out.neg_().addcmul_(deg, p[:, :, 1:-1, 1:-1])


class _TileLevel:
    """One level of a box cut into ``t x t`` tiles, of which only those listed are stored.

    A field is ``[C,N,t,t]``, one slice per listed tile; the other tiles hold no
    hole, so every field solved for (zero off the hole) is zero there. Halos are
    gathered with one flat index per halo width (pixels of unlisted tiles or off
    the box read a zero). The Laplacian, most of a V-cycle's work, reads its
    neighbours' edge rows and columns directly instead (see :meth:`laplace`).
    """

    def __init__(self, hole: torch.Tensor, t: int, tiles: tuple, dtype: torch.dtype) -> None:
        self.t = t
        self.ty, self.tx, self.ny, self.nx = tiles
        self.n = int(self.ty.numel())
        h, w = hole.shape
        self.box = (h, w)
        ch, cw = self.ny * t, self.nx * t
        dev = hole.device
        # Where each stored pixel sits on the dense canvas of all tiles.
        self._where = self.gather(torch.arange(ch * cw, device=dev).view(1, ch, cw), 0).flatten()
        self._halos: dict[tuple[int, str], torch.Tensor] = {}
        canvas_hole = torch.zeros(1, ch, cw, dtype=dtype, device=dev)
        canvas_hole[0, :h, :w] = hole.to(dtype)
        self.deg_canvas = torch.full((1, ch, cw), 4.0, dtype=dtype, device=dev)
        self.deg_canvas[0, :h, :w] = _degree(h, w, dtype, dev)
        self.hole = hole
        self.mask = self.gather(canvas_hole, 0)
        self.deg = self.gather(self.deg_canvas, 0)
        self.inv_degree = _Multigrid.OMEGA * self.mask / self.deg.clamp_min(1)
        # For each side, every listed tile's neighbour there (the edge rows and
        # columns the Laplacian reads across), and 1 where that is listed, 0 where
        # it reads zero (any tile's edge, times 0).
        grid = torch.full((self.ny + 2, self.nx + 2), -1, dtype=torch.long, device=dev)
        grid[self.ty + 1, self.tx + 1] = torch.arange(self.n, device=dev)
        self._across = []
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            other = grid[self.ty + 1 + dy, self.tx + 1 + dx]
            listed = (other >= 0).to(dtype)[None, :, None]
            self._across.append((other.clamp_min(0), listed))

    def gather(self, dense: torch.Tensor, halo: int) -> torch.Tensor:
        """The listed tiles, with ``halo``, of a dense ``[C,h,w]`` field (zero beyond it)."""
        c = dense.shape[0]
        ch, cw = self.ny * self.t, self.nx * self.t
        padded = dense.new_zeros(c, ch + 2 * halo, cw + 2 * halo)
        hh, ww = min(ch, dense.shape[1]), min(cw, dense.shape[2])
        padded[:, halo : halo + hh, halo : halo + ww] = dense[:, :hh, :ww]
        tiles = _windows(padded, self.t, halo, self.ny, self.nx)[self.ty, self.tx]
        return tiles.transpose(0, 1).contiguous()

    def _halo_index(self, halo: int, edges: str) -> torch.Tensor:
        idx = self._halos.get((halo, edges))
        if idx is None:
            ch, cw = self.ny * self.t, self.nx * self.t
            dev = self.ty.device
            zero = self.n * self.t * self.t  # the slot after the stored pixels reads 0
            pos = torch.full((ch * cw,), zero, dtype=torch.long, device=dev)
            pos[self._where] = torch.arange(zero, device=dev)
            lines = []
            for size, extent in zip(self.box, (ch, cw), strict=True):
                i = torch.arange(-halo, extent + halo, device=dev)
                if edges == "prolong":  # replicated box edges, as in _prolong
                    i = i.clamp(0, size - 1)
                elif edges == "restrict":  # its transpose, as in _restrict
                    i = torch.where(i < 0, 0, i)
                    if size % 2 == 0:
                        i = torch.where(i == size, size - 1, i)
                lines.append(i)
            rows, cols = lines
            inside = ((rows >= 0) & (rows < ch))[:, None] & ((cols >= 0) & (cols < cw))[None]
            flat = rows.clamp(0, ch - 1)[:, None] * cw + cols.clamp(0, cw - 1)[None]
            padded = torch.where(inside, pos[flat], zero)[None]
            side = self.t + 2 * halo
            tiles = _windows(padded, self.t, halo, self.ny, self.nx)[self.ty, self.tx]
            idx = tiles.reshape(-1)
            assert idx.numel() == self.n * side * side
            self._halos[(halo, edges)] = idx
        return idx

    def halo(self, s: torch.Tensor, halo: int, edges: str = "zero") -> torch.Tensor:
        """Tiles ``[C,N,t,t]`` with ``halo`` pixels of their neighbours: ``[C,N,t+2h,t+2h]``.

        Off the box the halo reads 0, or for ``edges`` "prolong" the nearest box
        pixel and for "restrict" what makes the restriction its transpose.
        """
        c = s.shape[0]
        flat = torch.cat([s.reshape(c, -1), s.new_zeros(c, 1)], 1)
        side = self.t + 2 * halo
        index = self._halo_index(halo, edges)
        return flat.index_select(1, index).view(c, self.n, side, side)

    def scatter(self, s: torch.Tensor) -> torch.Tensor:
        """The dense ``[C, ny t, nx t]`` canvas of tiles ``[C,N,t,t]`` (zero elsewhere)."""
        c = s.shape[0]
        canvas = s.new_zeros(c, self.ny * self.t * self.nx * self.t)
        canvas.index_copy_(1, self._where, s.reshape(c, -1))
        return canvas.view(c, self.ny * self.t, self.nx * self.t)

    def from_dense(self, dense: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`scatter` on the listed tiles."""
        c = dense.shape[0]
        t = self.t
        return dense.reshape(c, -1).index_select(1, self._where).view(c, self.n, t, t)

    def laplace(self, e: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """``L_h e`` for ``e`` zero outside the hole (result zero there too, unless not
        ``masked``).

        :func:`_laplace_tiles` of ``halo(e, 1)`` to the bit, without the halo's copy
        of every tile: the neighbours within a tile are shifted slices, and only the
        edge rows and columns add the edge of the tile across (gathered for every
        tile, times 0 where none is listed). The sums run in the same order. The
        bench's brush strokes at 1536 px: 3.91 s to 3.20 s (one thread, median of 7
        runs interleaved with the halo's version).
        """
        t = self.t
        (up, up_listed), (down, down_listed), (left, left_listed), (right, right_listed) = (
            self._across
        )
        out = torch.empty_like(e)
        torch.add(e[:, :, :-2], e[:, :, 2:], out=out[:, :, 1:-1])
        above = e[:, :, t - 1].index_select(1, up).mul_(up_listed)
        torch.add(above, e[:, :, 1], out=out[:, :, 0])
        below = e[:, :, 0].index_select(1, down).mul_(down_listed)
        torch.add(e[:, :, t - 2], below, out=out[:, :, t - 1])
        out[:, :, :, 1:] += e[:, :, :, :-1]
        out[:, :, :, 0] += e[:, :, :, t - 1].index_select(1, left).mul_(left_listed)
        out[:, :, :, :-1] += e[:, :, :, 1:]
        out[:, :, :, t - 1] += e[:, :, :, 0].index_select(1, right).mul_(right_listed)
        out.neg_().addcmul_(self.deg, e)
        return out.mul_(self.mask) if masked else out


def _restrict_tiles(r: torch.Tensor) -> torch.Tensor:
    """:func:`_restrict` of tiles ``[C,N,t+2,t+2]`` (one pixel of halo) to ``[C,N,t/2,t/2]``."""
    return _down2(_down2(r, -1), -2).mul_(0.5625)


def _prolong_tiles(e: torch.Tensor) -> torch.Tensor:
    """:func:`_prolong` of tiles ``[C,N,m+2,m+2]`` (one pixel of halo) to ``[C,N,2m,2m]``."""
    return _up2(_up2(e, -2), -1).mul_(0.5625)


class _TiledMultigrid:
    """:class:`_Multigrid` on the tiles of the box that hold hole, dense again once small.

    Tiles of ``TILE`` pixels; each coarser level halves them, with the same list
    of tiles, until they are ``TILE_DENSE`` pixels, where the rest of the
    hierarchy is a dense :class:`_Multigrid` on that (by then small) grid.
    Transfers and smoothing read one pixel of the neighbouring tiles.
    """

    def __init__(self, hole: torch.Tensor, tiles: tuple, dtype: torch.dtype) -> None:
        self.levels = [_TileLevel(hole, TILE, tiles, dtype)]
        self.dense: _Multigrid | None = None
        while True:
            lv = self.levels[-1]
            if min(lv.box) < 8:
                break
            coarse = _coarsen(lv.hole)
            if not bool(coarse.any()):
                break
            self.levels.append(_TileLevel(coarse, lv.t // 2, tiles, dtype))
            if lv.t // 2 <= TILE_DENSE:
                last = self.levels[-1]
                dense_hole = torch.zeros(
                    last.ny * last.t, last.nx * last.t, dtype=torch.bool, device=hole.device
                )
                dense_hole[: coarse.shape[0], : coarse.shape[1]] = coarse
                self.dense = _Multigrid(dense_hole, dtype)
                break

    def cycle(self, r: torch.Tensor, depth: int = 0) -> torch.Tensor:
        lv = self.levels[depth]
        if depth == len(self.levels) - 1:
            if self.dense is not None:
                return lv.from_dense(self.dense.cycle(lv.scatter(r)))
            return _jacobi(lv, None, r, _Multigrid.COARSEST_SWEEPS)
        e = _jacobi(lv, None, r, _Multigrid.SMOOTHING)
        coarse = self.levels[depth + 1]
        rc = _restrict_tiles(lv.halo(r - lv.laplace(e), 1, "restrict")).mul_(coarse.mask)
        ec = self.cycle(rc, depth + 1)
        e = e.addcmul_(_prolong_tiles(coarse.halo(ec, 1, "prolong")), lv.mask)
        return _jacobi(lv, e, r, _Multigrid.SMOOTHING)


def _active_tiles(hole: torch.Tensor) -> tuple:
    """The tiles of ``TILE`` pixels that hold hole: ``(ty, tx, ny, nx)``."""
    h, w = hole.shape
    ny, nx = -(-h // TILE), -(-w // TILE)
    has = F.max_pool2d(hole[None, None].float(), TILE, ceil_mode=True)[0, 0] > 0
    ty, tx = torch.nonzero(has, as_tuple=True)
    return ty, tx, ny, nx


def _solve_tiles(
    values: torch.Tensor,
    hole: torch.Tensor,
    tension: float,
    iterations: int,
    rtol: float,
    tiles,
    check: Callable[[], None] = _never,
) -> torch.Tensor:
    """:func:`_solve_box` with every iteration on the tiles that hold hole only."""
    g = _Grid(hole, values.dtype)
    known = values * (1 - g.mask)
    lu = _laplace(known)
    b = -lu * g.mask
    rhs = -_laplace(lu)
    if tension:
        rhs -= tension * lu
    rhs *= g.mask
    mg = _TiledMultigrid(hole, tiles, values.dtype)
    fine = mg.levels[0]
    b, rhs = fine.gather(b, 0), fine.gather(rhs, 0)
    deg_pad = fine.gather(fine.deg_canvas, 1)
    h, w = hole.shape
    inbox = torch.zeros_like(fine.deg_canvas)
    inbox[:, :h, :w] = 1
    inbox_pad = fine.gather(inbox, 1)
    dims = (1, 2, 3)

    x = _harmonic_start(fine.laplace, mg.cycle, b, dims, check)

    def operator(u: torch.Tensor) -> torch.Tensor:
        lu = _laplace_tiles(fine.halo(u, 2), deg_pad).mul_(inbox_pad)
        out = _laplace_tiles(lu, fine.deg)
        if tension:
            out.add_(lu[:, :, 1:-1, 1:-1], alpha=tension)
        return out.mul_(fine.mask)

    x = _thin_plate_cg(operator, _two_cycles(mg), x, rhs, iterations, rtol, dims, check)
    return fine.scatter(x)[:, :h, :w]


def _boxes(hole: torch.Tensor, margin: int) -> list[tuple[slice, slice]]:
    """Boxes, grown by ``margin`` and clipped, that together hold every hole pixel.

    Recursive cuts along rows or columns of the grown hole that are empty: the
    pieces' grown boxes never overlap, so each can be solved on its own.
    """
    h, w = hole.shape
    out: list[tuple[slice, slice]] = []
    # On the CPU: dozens of small reductions, each a device round trip otherwise.
    grown = dilate_square(hole, margin).cpu().numpy()
    todo = [(0, h, 0, w)]
    while todo:
        y0, y1, x0, x1 = todo.pop()
        sub = grown[y0:y1, x0:x1]
        rows = np.flatnonzero(sub.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(sub.any(axis=0))
        y0, y1 = y0 + int(rows[0]), y0 + int(rows[-1]) + 1
        x0, x1 = x0 + int(cols[0]), x0 + int(cols[-1]) + 1
        sub = grown[y0:y1, x0:x1]
        split = False
        for axis in (0, 1):
            gaps = np.flatnonzero(~sub.any(axis=1 - axis))
            if gaps.size:
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


# ---- deep holes: solved at half size first

# Holes with a pixel farther than this from known ones are solved at half size
# (recursively), and at full size only within RIM_DEPTH of the known pixels. Deep
# inside a big hole the fill varies slowly; a 4K outpaint band costs a 500 px solve.
COARSE_DEPTH = 128
# The half-size solve covers a deep hole's box grown by this much context; each
# halving halves it, and four halvings (a hole 2000 px deep) still leave the
# stencil's reach of known pixels around the hole.
COARSE_MARGIN = 64
# Boxes with more hole pixels than this (and some pixel deeper than THIN_DEPTH) are
# halved too, however shallow: the grids cost 5-20 us a hole pixel (one thread), so
# a million is 5-20 s. Wide strokes over 30% of a 4K frame (150-240 px, one box
# of 1.3M pixels at half size): 43.5 s to 6.7 s, 15.69 to 15.93 dB; bench masks up to
# 1536 px never reach it.
COARSE_PIXELS = 1_000_000


def downsample_known(
    image: torch.Tensor, hole: torch.Tensor, any_known: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[H,W,C]`` image at half size, each pixel the mean of its known children.

    A pixel of the half-size hole is one with any child in ``hole`` (with
    ``any_known``, one with every child in it); its value is the mean of the known
    children, 0 when none are.
    """
    known = (~hole).to(image.dtype)[None, None]
    weight = F.avg_pool2d(known, 2, ceil_mode=True)
    total = F.avg_pool2d(image.movedim(-1, 0)[None] * known, 2, ceil_mode=True)
    small = (total / weight.clamp_min(1e-6))[0].movedim(0, -1)
    return small, weight[0, 0] < (1e-3 if any_known else 0.999)


def _coarse_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    box: tuple[slice, slice],
    tension: float | None,
    iterations: int,
    rtol: float,
    side: float,
    check: Callable[[], None] = _never,
) -> torch.Tensor:
    """``[C,h,w]``: ``box`` of ``image`` ``[H,W,C]`` with its hole filled at half size and
    scaled back up (bilinear).

    The half-size problem is the box grown by ``COARSE_MARGIN`` of known
    surroundings. The tension, when given, is scaled with the pixel size (``L``
    grows 4-fold per halving), so it is the same thin-plate; so is the default,
    through ``side``.
    """
    ys, xs = box
    h, w = hole.shape
    y0, x0 = max(0, ys.start - COARSE_MARGIN), max(0, xs.start - COARSE_MARGIN)
    window = (
        slice(y0, min(h, ys.stop + COARSE_MARGIN)),
        slice(x0, min(w, xs.stop + COARSE_MARGIN)),
    )
    small, small_hole = downsample_known(image[window], hole[window])
    if bool(small_hole.all()):
        # No 2x2 block wholly known (one known row, say): a half-size pixel with any
        # known child is known, rather than the whole hole solved at full size (a
        # 2048 px frame with one known row: 57 s).
        small, small_hole = downsample_known(image[window], hole[window], any_known=True)
    lam = None if tension is None else 4 * tension
    small = _fill(small, small_hole, lam, iterations, rtol, side / 2, check)
    up = F.interpolate(small.movedim(-1, 0)[None], scale_factor=2, mode="bilinear")[0]
    return up[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def smooth_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    tension: float | None = None,
    iterations: int = 30,
    rtol: float = 1e-4,
    progress: ProgressHook | None = None,
) -> torch.Tensor:
    """Fill ``hole`` ``[H,W]`` of ``image`` ``[H,W,C]``; returns the filled image.

    ``tension`` is ``λ`` at this resolution (default: ``TENSION_AT_512`` scaled to
    the frame, times ``OPEN_TENSION_FACTOR`` for holes that reach the frame edge and
    for strokes, 0 for closed scratches; 0 gives the pure biharmonic fill).
    ``iterations`` caps the grid solves' conjugate-gradient steps; ``rtol`` is the
    residual reduction that ends them (thin holes are solved directly, to float64
    precision). Each hole component stays within the range of its border's values.
    ``progress`` is asked between solver steps whether to stop (it reports no
    progress: one box can be all of the work).
    """
    if tension is not None and not (
        isinstance(tension, numbers.Real)
        and not isinstance(tension, bool)
        and 0 <= tension <= MAX_TENSION
    ):
        raise UncropError(
            f"tension: expected a number from 0 to {MAX_TENSION:g} (or None for the default; "
            f"{MAX_TENSION:g} already gives the harmonic fill), got {tension!r}."
        )
    if not bool(hole.any()):
        return image
    if bool(hole.all()):
        raise UncropError("mask: covers the whole image, so there is nothing to fill it from.")
    work = at_least_float32(image)
    check = or_null(progress).check_interrupted
    out = _fill(work, hole, tension, iterations, rtol, max(hole.shape), check)
    return out.to(image.dtype)


class _Bounds:
    """The range of each hole component's border, to clamp its fill to.

    A component (8-connected) may take, channel by channel, only values found on
    the known pixels that touch it: the maximum principle a harmonic fill has
    by itself. The thin-plate carries gradients in and can overshoot: where
    the border rises towards the hole from both sides, the fill peaks above
    every pixel on it. The clamp cuts off what goes past the border's range in
    any channel and leaves a fill within it, a ramp say, as it is (a colour
    made of in-range channels can still be one the border lacks).
    """

    def __init__(self, box: torch.Tensor, hole: torch.Tensor) -> None:
        """``box`` ``[h,w,C]`` holds ``hole`` and the known pixels around it."""
        labels_np, count = label_islands(hole.cpu().numpy())
        self.labels = torch.from_numpy(labels_np).to(hole.device, torch.long) if count > 1 else None
        h, w = hole.shape
        c = box.shape[-1]
        ry, rx = torch.nonzero(dilate_square(hole, 1) & ~hole, as_tuple=True)
        border = box[ry, rx]
        if self.labels is None:
            self.lo, self.hi = border.amin(0), border.amax(0)
            return
        self.lo = box.new_full((count + 1, c), float("inf"))
        self.hi = box.new_full((count + 1, c), float("-inf"))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:  # the component (0: none) of each border pixel's neighbour
                    at = self.labels[(ry + dy).clamp(0, h - 1), (rx + dx).clamp(0, w - 1)]
                    at = at[:, None].expand(-1, c)
                    self.lo.scatter_reduce_(0, at, border, "amin")
                    self.hi.scatter_reduce_(0, at, border, "amax")

    def clamp(self, values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """``values`` ``[N,C]`` of the pixels ``where`` (hole pixels, in ``nonzero`` order),
        each within its component's range."""
        if self.labels is None:
            return torch.clamp(values, self.lo, self.hi)
        part = self.labels[where]
        lo, hi = self.lo.index_select(0, part), self.hi.index_select(0, part)
        return torch.minimum(torch.maximum(values, lo), hi)

    def clamp_into(self, box: torch.Tensor, values: torch.Tensor, where: torch.Tensor) -> None:
        """Write ``values`` ``[h,w,C]`` (the box's size), clamped as :meth:`clamp` does,
        into ``box`` at ``where``. With one component, dense: a whole outpaint band
        without gathering and scattering each of its pixels."""
        if self.labels is not None:
            box[where] = self.clamp(values[where], where)
            return
        box.copy_(torch.where(where.unsqueeze(-1), torch.clamp(values, self.lo, self.hi), box))


def _open(box_hole: torch.Tensor, ys: slice, xs: slice, frame: tuple[int, int]) -> bool:
    """Whether the hole of a box covers at least half of one of its sides on the frame edge.

    Only the box's own hole counts (a stroke beside an outpaint band is not open).
    """
    h, w = frame
    sides = (
        (ys.start == 0, box_hole[0]),
        (ys.stop == h, box_hole[-1]),
        (xs.start == 0, box_hole[:, 0]),
        (xs.stop == w, box_hole[:, -1]),
    )
    return any(on_edge and float(side.float().mean()) >= 0.5 for on_edge, side in sides)


def _fill(
    work: torch.Tensor,
    hole: torch.Tensor,
    tension: float | None,
    iterations: int,
    rtol: float,
    side: float,
    check: Callable[[], None] = _never,
) -> torch.Tensor:
    """:func:`smooth_fill` of a float image, the default tension set for a frame whose
    long side is ``side`` (the frame's own, or the frame's at a coarser level);
    ``check`` raises to cancel."""
    out = work.clone(memory_format=torch.contiguous_format)
    deep_at = functools.cache(lambda depth: _deep(hole, depth))  # whole frame, once each
    deep = deep_at(THIN_DEPTH)
    thin_boxes: dict[tuple, list[tuple[slice, slice]]] = {}  # by tension and cell
    for ys, xs in _boxes(hole, _REACH):
        check()
        box_hole = hole[ys, xs]
        thin = not bool(deep[ys, xs].any())
        lam = tension
        if lam is None:
            lam = TENSION_AT_512 * (512.0 / side) ** 2
            if _open(box_hole, ys, xs, hole.shape):
                lam *= OPEN_TENSION_FACTOR
            else:
                lam *= _closed_factor(deep_at, ys, xs, side)
        if thin:
            cell = (lam, ys.start // THIN_CELL, xs.start // THIN_CELL)
            thin_boxes.setdefault(cell, []).append((ys, xs))
            continue
        box = out[ys, xs]  # a view: what is written here lands in `out`
        bounds = _Bounds(box, box_hole)
        if int(box_hole.sum()) > COARSE_PIXELS or bool(_deep(box_hole, COARSE_DEPTH).any()):
            # The inside from half size; the rim, within RIM_DEPTH of known pixels,
            # solved as a thin hole around it.
            half = _coarse_fill(work, hole, (ys, xs), tension, iterations, rtol, side, check)
            inside = _deep(box_hole, RIM_DEPTH)
            bounds.clamp_into(box, half.movedim(0, -1), inside)
            rim = box_hole & ~inside
            box[rim] = bounds.clamp(_solve_thin(box, rim, lam, check), rim)
            continue
        values = work[ys, xs].movedim(-1, 0).contiguous()
        tiles = _active_tiles(box_hole)
        if tiles[0].numel() * TILE * TILE < TILED_BELOW * box_hole.numel():
            x = _solve_tiles(values, box_hole, lam, iterations, rtol, tiles, check)
        else:
            x = _solve_box(values, box_hole, lam, iterations, rtol, check)
        box[box_hole] = bounds.clamp(x.movedim(0, -1)[box_hole], box_hole)
    for (lam, *_), group in thin_boxes.items():
        _fill_thin_boxes(out, hole, group, lam, check)
    return out


def _closed_factor(
    deep_at: Callable[[int], torch.Tensor], ys: slice, xs: slice, side: float
) -> float:
    """The default tension of the closed hole in box ``ys, xs``, as a multiple of the
    frame's: none for a scratch, ``OPEN_TENSION_FACTOR`` for a stroke, 1 deeper
    (``STROKE_DEPTH``, scaled to ``side``). ``deep_at(d)`` is the frame's :func:`_deep`
    map: computed once, not per box (a dust mask has thousands of boxes)."""
    shallow, deep = (max(1, round(d * side / 512)) for d in STROKE_DEPTH)
    if not bool(deep_at(shallow)[ys, xs].any()):
        return 0.0
    return 1.0 if bool(deep_at(deep)[ys, xs].any()) else OPEN_TENSION_FACTOR


# Thin boxes that start in one cell of this side are solved together (see
# _fill_thin_boxes); far apart, each alone, so two scratches in the corners of a 4K
# frame do not cost the frame (0.30 s alone, 0.53 s on the box around both).
THIN_CELL = 256


def _fill_thin_boxes(out, hole, boxes: list[tuple[slice, slice]], tension: float, check) -> None:
    """Fill the thin holes of ``boxes`` in ``out`` in one solve on the box around them all.

    The boxes' holes are apart by more than the stencil's reach, so the system is theirs
    side by side, solved as one: the same fill, without a solve's fixed costs for each
    (a dust mask of 4096 specks at 512 px: 4096 solves, 2.4 s; in one, 0.18 s)."""
    ys = slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes))
    xs = slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes))
    part = torch.zeros_like(hole[ys, xs])  # only these boxes' holes: not a deep one between
    for by, bx in boxes:
        y0, x0 = by.start - ys.start, bx.start - xs.start
        part[y0 : y0 + by.stop - by.start, x0 : x0 + bx.stop - bx.start] = hole[by, bx]
    region = out[ys, xs]  # a view, as each box was
    check()
    bounds = _Bounds(region, part)
    region[part] = bounds.clamp(_solve_thin(region, part, tension, check), part)
