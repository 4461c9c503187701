"""Exemplar-based completion: PatchMatch search with EM voting, coarse to fine.

The hole is filled by copying patches from the known image (Wexler, Shechtman &
Irani 2007, with the nearest-neighbour field found by PatchMatch, Barnes et al.
2009). The pyramid is only as deep as the hole is thick: it stops at the level
where no hole pixel is more than ``DEPTH_IN_PATCHES`` patches from known pixels, so
thin strokes are matched at full resolution. The coarsest level starts from the
smooth (thin-plate) fill of :mod:`.smooth` at that level's size, which carries
the border's colours and edges inwards; the fill's low frequencies come from it
(see :meth:`_Search.anchored`). On each level, from coarse to fine, EM rounds alternate

- search: for every hole pixel and its neighbours within ``VOTE_RADIUS``, find a
  similar patch whose centre lies in the allowed source area (fully known, and
  inside the optional source mask), by PatchMatch: candidates propagated from
  neighbours at halving distances (as in jump flooding, so all pixels update at
  once) and random samples around the current match at shrinking radii;
- vote: every hole pixel becomes the weighted mean of the colours proposed by
  the patches centred within ``VOTE_RADIUS`` of it (gathered for the hole pixels
  alone, so scattered strokes cost what they cover; only the patches' central part:
  averaging whole patches blurs); a proposal weighs ``exp(-d / 2σ²)`` for its
  patch distance ``d`` times the patch's confidence, the share of known pixels
  around its centre, so patches that overlap the known border steer the fill and
  the border's structure is continued rather than invented.

A finer level starts from the coarser field, upsampled, and votes with it before
searching, so only a local search is needed there. The last vote copies, for
each pixel, the proposal of the best patch instead of the mean (keeps texture),
and then takes its local mean (over ``ANCHOR_RADIUS``) from the level's start:
the copy brings the detail, the start the low frequencies, which a copy from
elsewhere gets only roughly right.
Rounds are few (``COARSE_ROUNDS``, ``FINE_ROUNDS``): every mean vote smooths the
fill a little more, and the first search from a good start already finds most
of what later ones would.

Everything is batched tensor code over all hole pixels (no per-pixel loops), runs
on the input's device, and is deterministic for a seed. Copies only ever come from
allowed pixels: candidate centres outside the allowed area have features no patch
comes near, so they never win, and every patch voted from lies entirely in it.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .errors import UncropError
from .inputs import at_least_float32, generator, is_whole
from .masks import dilate_square, erode_square
from .progress import ProgressHook, or_null
from .smooth import downsample_known, smooth_fill

log = logging.getLogger(__name__)

ANCHOR_RADIUS = 1  # the final fill's local mean (over this radius) is the start's
COARSEST_SIDE = 32  # the pyramid stops when the shorter side would drop below this
FEATURES = 6  # principal components of a patch used to compare patches
# Coarsen while some hole pixel is this many patch sides from known pixels. Higher
# scores better PSNR on the bench but leaves mid-sized holes (a spoon) to the
# smooth guess's low frequencies alone: a blur with copied grain on top.
DEPTH_IN_PATCHES = 5
CONFIDENCE_FLOOR = 0.05  # vote weight of a patch with no known pixel around its centre
COARSE_ROUNDS = 1  # EM rounds on the coarsest level (the first searches globally)
FINE_ROUNDS = 1  # EM rounds on each finer level (local search)
SIGMA_QUANTILE = 0.75  # vote weights fall off over this quantile of the patch distances
GLOBAL_ITERATIONS = 2  # PatchMatch iterations of the coarsest level's global search
FAR = 1e4  # feature value of disallowed source centres (patch features are within ±15)
TILE = 64  # side of the tiles that patch projections are convolved over
VOTE_RADIUS = 1  # a pixel is voted by the patches centred within this distance of it
VOTE_CHUNK = 1 << 19  # hole pixels voted at a time (each gathers a few hundred bytes)


def _thick(hole: torch.Tensor, radius: int) -> bool:
    """Whether some hole pixel is more than ``radius`` from every known pixel.

    The frame edge does not count as known (an outpaint band is as thick as it is
    wide).
    """
    return bool(erode_square(hole, radius, beyond=True).any())


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
        # Centres whose whole patch is allowed; where the allowed area is narrower
        # than a patch, those whose voting neighbourhood is (votes copy from there;
        # patch_fill sees to it that there are some where a source mask is given).
        valid = erode_square(source, radius)
        if not bool(valid.any()):
            valid = erode_square(source, VOTE_RADIUS)
        if not bool(valid.any()):
            valid = source
        self.valid = valid.flatten()
        self.hole_y, self.hole_x = torch.nonzero(hole, as_tuple=True)
        self.hole_flat = self.hole_y * w + self.hole_x
        self.valid_flat = torch.nonzero(self.valid).flatten()
        self.targets = torch.nonzero(dilate_square(hole, VOTE_RADIUS).flatten()).flatten()
        r = torch.arange(-radius, radius + 1, device=dev)
        oy, ox = torch.meshgrid(r, r, indexing="ij")
        self.oy, self.ox = oy.flatten(), ox.flatten()
        # The offsets of the patch centres that vote for a pixel (see vote_centres), and
        # the flat offset from each back to the pixel.
        rv = torch.arange(-VOTE_RADIUS, VOTE_RADIUS + 1, device=dev)
        self.vote_y, self.vote_x = (v.flatten() for v in torch.meshgrid(rv, rv, indexing="ij"))
        self.vote_offset = self.vote_y * w + self.vote_x
        # Confidence of a patch: share of known pixels in the window around its centre
        # (of those in the frame).
        known = (~hole).to(image.dtype)[None]
        share = (_box_sum(known, radius) / _box_sum(torch.ones_like(known), radius)).flatten()
        self.confidence = (_take(share, self.targets) + CONFIDENCE_FLOOR).clamp_max(1.0)

    def vote_centres(self, at: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch centres within ``VOTE_RADIUS`` of the hole pixels ``at`` (a slice
        of ``hole_flat``), ``[N,K]`` flat and clamped into the frame, and whether each
        is in it (those off it weigh nothing)."""
        py = self.hole_y[at].unsqueeze(1) + self.vote_y
        px = self.hole_x[at].unsqueeze(1) + self.vote_x
        inside = ((py >= 0) & (py < self.h) & (px >= 0) & (px < self.w)).to(self.image.dtype)
        return py.clamp_(0, self.h - 1) * self.w + px.clamp_(0, self.w - 1), inside

    def patches(self, image: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """``[N,K*C]`` patch pixels around flat ``centres`` (clamped at the frame)."""
        y = (centres // self.w).unsqueeze(1) + self.oy
        x = (centres % self.w).unsqueeze(1) + self.ox
        flat = y.clamp(0, self.h - 1) * self.w + x.clamp(0, self.w - 1)
        return image.reshape(-1, image.shape[-1])[flat].reshape(centres.numel(), -1)

    def fit_features(self, gen: torch.Generator) -> None:
        """Principal components of the allowed source patches, and every pixel's projection.

        Patch distances are then measured between ``FEATURES``-long projections
        instead of whole patches: far less memory traffic per candidate, and the
        ranking of candidates barely changes (most of a patch's energy is in its
        first components). Source patches are fully known, so their projections
        are computed once per level; only the targets' change between rounds.
        """
        c = self.image.shape[-1]
        n = self.valid_flat.numel()
        pick = (torch.rand(min(n, 4096), generator=gen) * n).long().to(self.image.device)
        sample = self.patches(self.image, self.valid_flat[pick.clamp_max(n - 1)])
        self.mean = sample.mean(dim=0)
        self.basis = _principal_directions(sample - self.mean, FEATURES, gen)  # [K*C, d]
        d = self.basis.shape[1]
        side = 2 * self.radius + 1
        self.filters = self.basis.T.reshape(d, side, side, c).permute(0, 3, 1, 2).contiguous()
        self.offset = self.mean @ self.basis
        self.source_features = self._project(self.image, (0, self.h, 0, self.w))
        # Centres outside the allowed area get features no patch comes near, so they
        # never win a comparison (every field starts from allowed centres only).
        self.source_features[:, ~self.valid] = FAR
        ty, tx = self.targets // self.w, self.targets % self.w
        self.box = (int(ty.min()), int(ty.max()) + 1, int(tx.min()), int(tx.max()) + 1)
        self.target_tiles = self._tiles(self.targets, self.box)

    def _tiles(
        self, centres: torch.Tensor, box: tuple[int, int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``TILE``-square tiles of ``box`` that hold ``centres``.

        Returns their rows and columns in the box's tile grid, and each centre's
        position in the flattened ``[tiles, TILE, TILE]`` output of :meth:`_project`.
        """
        y0, y1, x0, x1 = box
        ny, nx = -(-(y1 - y0) // TILE), -(-(x1 - x0) // TILE)
        cy, cx = centres // self.w - y0, centres % self.w - x0
        tile = (cy // TILE) * nx + cx // TILE
        used = torch.zeros(ny * nx, dtype=torch.bool, device=centres.device)
        used[tile] = True
        ids = torch.nonzero(used).flatten()
        rank = torch.cumsum(used, 0) - 1
        pos = (rank[tile] * TILE + cy % TILE) * TILE + cx % TILE
        return ids // nx, ids % nx, pos

    def _project(
        self,
        image: torch.Tensor,
        box: tuple[int, int, int, int],
        tiles: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``[d, N]`` patch projections (frame replicated) over ``box``.

        At the centres :meth:`_tiles` placed, by a convolution over their tiles
        only (cheap for scattered strokes); or, without ``tiles``, at every pixel
        of the box in raster order. Feature-major, so that comparing candidates
        gathers whole rows (see :meth:`_Search._distance`).
        """
        r = self.radius
        y0, y1, x0, x1 = box
        a, b = max(0, y0 - r), min(self.h, y1 + r)
        c, d = max(0, x0 - r), min(self.w, x1 + r)
        grid = image[a:b, c:d].movedim(-1, 0)[None]
        pad = (r - (x0 - c), r - (d - x1), r - (y0 - a), r - (b - y1))
        if any(pad):
            grid = F.pad(grid, pad, mode="replicate")
        if tiles is None:
            return F.conv2d(grid, self.filters)[0].flatten(1).sub_(self.offset[:, None])
        ny, nx = -(-(y1 - y0) // TILE), -(-(x1 - x0) // TILE)
        grid = F.pad(grid, (0, nx * TILE - (x1 - x0), 0, ny * TILE - (y1 - y0)))[0].contiguous()
        channels, hp, wp = grid.shape
        side = TILE + 2 * r
        view = grid.as_strided((ny, nx, channels, side, side), (TILE * wp, TILE, hp * wp, wp, 1))
        rows, cols, pos = tiles
        out = F.conv2d(view[rows, cols], self.filters)
        return out.transpose(0, 1).reshape(out.shape[1], -1)[:, pos] - self.offset[:, None]

    def target_features(self, image: torch.Tensor) -> torch.Tensor:
        """``[d, T]`` projections of the targets' patches in ``image``."""
        return self._project(image, self.box, self.target_tiles)


# Patches with more values than this (patch_size 15 and up, in colour) take randomized
# principal directions: the exact eigendecomposition costs their count cubed (2883 values,
# patch_size 31: 3.5 s a pyramid level, one thread; randomized 0.1 s).
EXACT_PCA_DIMS = 512
PCA_OVERSAMPLING = 10
PCA_POWER_ITERATIONS = 3


def _principal_directions(sample: torch.Tensor, d: int, gen: torch.Generator) -> torch.Tensor:
    """``[D, min(d, D)]``: the strongest principal directions of the centred ``sample``
    ``[n, D]``, strongest first.

    Up to ``EXACT_PCA_DIMS`` values, the covariance's exact eigenvectors; beyond, a
    randomized subspace iteration (Halko, Martinsson and Tropp 2011) started from
    ``gen``, so still deterministic for a seed. The small eigenproblems run in
    float64 on the CPU: with few source patches the covariance is rank deficient,
    where float32 ``eigh`` can fail to converge (and MPS has no float64).
    """
    n, dim = sample.shape
    d = min(d, dim)
    if dim <= EXACT_PCA_DIMS:
        cov = sample.T @ sample / max(1, n - 1)
        _vals, vecs = torch.linalg.eigh(cov.cpu().double())
        return vecs.to(cov)[:, -d:].flip(1).contiguous()
    k = min(dim, d + PCA_OVERSAMPLING)
    q = torch.randn(dim, k, generator=gen).to(sample)
    for _ in range(PCA_POWER_ITERATIONS):
        q = torch.linalg.qr((sample.T @ (sample @ q)).cpu().double())[0].to(sample)
    projected = sample @ q  # [n, k]
    _vals, vecs = torch.linalg.eigh((projected.T @ projected).cpu().double())
    return (q @ vecs.to(q)[:, -d:]).flip(1).contiguous()


class _Search:
    """PatchMatch over the level's targets; ``nnf`` is a dense ``[H*W]`` field of source centres."""

    def __init__(self, level: _Level, gen: torch.Generator, hook: ProgressHook) -> None:
        self.level = level
        self.gen = gen
        self.hook = hook  # asked between propagation passes whether to stop

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(self.level.image.device)

    def _random_valid(self, n: int) -> torch.Tensor:
        lv = self.level
        pick = (self._rand(n) * lv.valid_flat.numel()).long()
        return lv.valid_flat[pick.clamp_max(lv.valid_flat.numel() - 1)]

    def random_field(self) -> torch.Tensor:
        lv = self.level
        nnf = torch.arange(lv.h * lv.w, device=lv.image.device)
        nnf[lv.targets] = self._random_valid(lv.targets.numel())
        return nnf

    def upsampled_field(self, nnf: torch.Tensor, coarse: tuple[int, int]) -> torch.Tensor:
        """The coarser level's field at this level: each pixel keeps its parent's offset."""
        lv = self.level
        hc, wc = coarse
        t = lv.targets
        ty, tx = t // lv.w, t % lv.w
        cy, cx = (ty // 2).clamp_max(hc - 1), (tx // 2).clamp_max(wc - 1)
        src = nnf[cy * wc + cx]
        sy = (src // wc) * 2 + (ty - cy * 2)
        sx = (src % wc) * 2 + (tx - cx * 2)
        cand = sy.clamp(0, lv.h - 1) * lv.w + sx.clamp(0, lv.w - 1)
        bad = ~lv.valid[cand]
        cand = torch.where(bad, self._random_valid(t.numel()), cand)
        out = torch.arange(lv.h * lv.w, device=nnf.device)
        out[t] = cand
        return out

    def _distance(self, target: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        diff = self.level.source_features.index_select(1, cand)
        diff -= target
        return diff.square_().sum(dim=0)

    def _try(self, cand_y: torch.Tensor, cand_x: torch.Tensor) -> None:
        """Keep candidate centres that beat the current match (clamped into the frame)."""
        lv = self.level
        cand = cand_y.clamp_(0, lv.h - 1) * lv.w + cand_x.clamp_(0, lv.w - 1)
        d = self._distance(self.tp, cand)
        better = d < self.best_d
        self.best = torch.where(better, cand, self.best)
        self.best_d = torch.minimum(d, self.best_d)

    def evaluate(self, image: torch.Tensor, nnf: torch.Tensor) -> None:
        """Distances of the current field for ``image`` (the hole holding the current guess)."""
        lv = self.level
        lv.image_now = image
        self.tp = lv.target_features(image)
        self.best = _take(nnf, lv.targets)
        self.best_d = self._distance(self.tp, self.best)
        self.distance = self.best_d

    def run(
        self, image: torch.Tensor, nnf: torch.Tensor, iterations: int, global_search: bool
    ) -> torch.Tensor:
        """Improve ``nnf`` at the targets for the current ``image``.

        A global search propagates over long jumps and samples the whole frame; a
        local one (on finer levels, whose field comes upsampled from the coarser
        level) propagates to near neighbours and samples within a few pixels.
        """
        lv = self.level
        self.evaluate(image, nnf)
        t = lv.targets
        ty, tx = t // lv.w, t % lv.w
        longest = max(lv.h, lv.w)
        if global_search:
            jumps = [1 << k for k in range(max(1, int(math.log2(longest)) - 2), -1, -1)]
            reach = float(longest)
        else:
            jumps, reach = [2, 1], 4.0
        for _ in range(iterations):
            for k in jumps:
                self.hook.check_interrupted()
                for dy, dx in ((-k, 0), (k, 0), (0, -k), (0, k)):
                    # The target's neighbour (clamped into the frame) and its offset back.
                    ny, nx = (ty + dy).clamp_(0, lv.h - 1), (tx + dx).clamp_(0, lv.w - 1)
                    src = _take(nnf, ny * lv.w + nx)
                    self._try(src // lv.w - (ny - ty), src % lv.w - (nx - tx))
                nnf[t] = self.best
            radius = reach
            by, bx = self.best // lv.w, self.best % lv.w
            while radius >= 1:
                ry = ((self._rand(t.numel()) * 2 - 1) * radius).round().long()
                rx = ((self._rand(t.numel()) * 2 - 1) * radius).round().long()
                self._try(by + ry, bx + rx)
                radius /= 2
            nnf[t] = self.best
        self.distance = self.best_d
        return nnf

    def vote(self, nnf: torch.Tensor, sharp: bool = False) -> torch.Tensor:
        """Each hole pixel: weighted mean of what the patches centred near it propose.

        ``sharp`` (the last vote) instead takes the proposal of the best-weighted
        patch, so that fine texture is copied rather than averaged away.
        """
        lv = self.level
        image = lv.image_now
        h, w, c = image.shape
        flat = image.reshape(-1, c)
        d = self.distance
        sigma2 = torch.quantile(d[:: max(1, d.numel() // 65536)], SIGMA_QUANTILE).clamp_min(1e-6)
        weight_at = torch.zeros(h * w, device=image.device, dtype=image.dtype)
        weight_at[lv.targets] = (torch.exp(-d / (2 * sigma2)) * lv.confidence).clamp_min(1e-12)
        out = image.clone().reshape(-1, c)
        for start in range(0, lv.hole_flat.numel(), VOTE_CHUNK):
            at = slice(start, start + VOTE_CHUNK)
            centre, inside = lv.vote_centres(at)
            wt = _take(weight_at, centre).mul_(inside)
            if sharp:  # only the winner's colour is gathered
                k = wt.argmax(dim=1, keepdim=True)
                source = _take(nnf, centre.gather(1, k)[:, 0]) - lv.vote_offset[k[:, 0]]
                total = _take(flat, source.clamp_(0, h * w - 1))
            else:
                colour = _take(flat, (_take(nnf, centre) - lv.vote_offset).clamp_(0, h * w - 1))
                total = (colour * wt.unsqueeze(-1)).sum(1)
                total /= wt.sum(1).clamp_min(1e-12).unsqueeze(-1)
            out[lv.hole_flat[at]] = total
        return out.view(h, w, c)

    def anchored(self, image: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``image`` with each hole pixel's local mean moved to that of ``start``.

        The mean is over the hole pixels within ``ANCHOR_RADIUS``: the copied
        detail stays, while the low frequencies, which a copy from elsewhere gets
        only roughly right, come from the level's start (the smooth
        fill, or the coarser level's result). Box sums over the hole's box: a
        few passes, cheaper than gathering each hole pixel's neighbours.
        """
        lv = self.level
        h, w, c = image.shape
        r = ANCHOR_RADIUS
        # The hole's box grown by the radius: every pixel the means read.
        ys, xs = lv.hole_y, lv.hole_x
        y0, y1 = max(0, int(ys.min()) - r), min(h, int(ys.max()) + r + 1)
        x0, x1 = max(0, int(xs.min()) - r), min(w, int(xs.max()) + r + 1)
        hole = lv.hole[y0:y1, x0:x1]
        weight = hole.to(image.dtype)[None]
        diff = (start[y0:y1, x0:x1] - image[y0:y1, x0:x1]).movedim(-1, 0) * weight
        shift = (_box_sum(diff, r) / _box_sum(weight, r))[:, hole].T
        out = image.clone().reshape(-1, c)
        out[lv.hole_flat] = (out[lv.hole_flat] + shift).clamp_(0.0, 1.0)
        return out.view(h, w, c)


def _votable(allowed: torch.Tensor) -> bool:
    """Whether some allowed pixel has every pixel it votes from allowed too."""
    return bool(erode_square(allowed, VOTE_RADIUS).any())


def _upsample(
    image: torch.Tensor, size: tuple[int, int], weight: torch.Tensor | None
) -> torch.Tensor:
    """``image`` ``[h,w,C]`` scaled to ``size``, bilinear; with a ``weight`` ``[h,w]``, each
    pixel is the weighted mean, so pixels of weight 0 are left out wherever another is
    near (the excluded source area must not tint the fill next to it)."""

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.movedim(-1, 0)[None], size=size, mode="bilinear")[0].movedim(0, -1)

    if weight is None:
        return up(image)
    w = weight.to(image.dtype).unsqueeze(-1)
    total = up(w)
    return torch.where(total > 1e-3, up(image * w) / total.clamp_min(1e-3), up(image))


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for an integer ``index`` of any shape, by ``index_select`` (several
    times faster than advanced indexing on the CPU)."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _box_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sums of ``x`` ``[C,H,W]`` over the ``2r+1`` squares around each pixel (zero off the edge).

    Separable sums of shifted slices: a few passes, where ``avg_pool2d`` with
    stride 1 is several times slower on the CPU.
    """
    k = 2 * r + 1
    p = F.pad(x, (r, r, r, r))
    hh, ww = x.shape[1], x.shape[2]
    rows = p[:, :hh].clone()
    for i in range(1, k):
        rows += p[:, i : i + hh]
    out = rows[:, :, :ww].clone()
    for i in range(1, k):
        out += rows[:, :, i : i + ww]
    return out


def _downsample(
    image: torch.Tensor, hole: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, new_hole = downsample_known(image, hole)
    new_source = -F.max_pool2d(-source[None, None].float(), 2, ceil_mode=True)[0, 0] > 0
    return out, new_hole, new_source & ~new_hole


# Peak memory of a patch fill, per pixel of the frame and per hole pixel on top,
# fitted to peak RSS on the CPU (one thread, less the 0.3-0.4 GiB the process holds
# before): bench/big.py's 4096 px frames with brush strokes (15 % hole, 3.5 GiB) and
# wide strokes (32 %, 3.5 GiB), and outpaint canvases of 4096 and 8192 px (75 %,
# 4.7 and 17.1 GiB). The estimate is within 6 % of each.
PEAK_BYTES_PER_PIXEL = 180
PEAK_BYTES_PER_HOLE_PIXEL = 120
MEMINFO = "/proc/meminfo"  # Linux's memory figures, read where psutil is missing


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device`` (None where it cannot be told).

    On the CPU, the memory the system can give without swapping (psutil, which
    ComfyUI ships, else Linux's ``/proc/meminfo``); on a CUDA GPU, what the driver
    has free plus what torch's allocator holds unused.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open(MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(image: torch.Tensor, hole: torch.Tensor) -> None:
    """Refuse a patch fill that would not fit in memory, before it starts.

    A process that runs out of memory on the CPU is killed by the system (ComfyUI
    with it), with no message; a 4096 px image outpainted to 16384 px would need
    about 70 GiB.
    """
    h, w = hole.shape
    need = PEAK_BYTES_PER_PIXEL * h * w + PEAK_BYTES_PER_HOLE_PIXEL * int(hole.sum())
    free = free_bytes(image.device)
    if free is not None and need > free:
        raise UncropError(
            f"image: a patch fill of {w}x{h} px with {int(hole.sum())} px to fill needs about "
            f"{need / 2**30:.1f} GiB of memory, and {free / 2**30:.1f} GiB is free on "
            f"{image.device.type}; fill a smaller image or canvas, use the smooth, mirror "
            "or edge method, or free memory."
        )


MAX_PATCH_SIZE = 31  # a patch's pixels are gathered per candidate: memory grows with its area


def check_patch_size(patch_size: int, name: str = "patch_size") -> None:
    """Patches are odd squares of side 3 to ``MAX_PATCH_SIZE`` (they need a centre pixel)."""
    if not is_whole(patch_size) or not 3 <= patch_size <= MAX_PATCH_SIZE or patch_size % 2 == 0:
        raise UncropError(
            f"{name}: expected an odd number from 3 to {MAX_PATCH_SIZE}, got {patch_size}."
        )


def patch_fill(
    image: torch.Tensor,
    hole: torch.Tensor,
    source: torch.Tensor | None = None,
    patch_size: int = 7,
    seed: int = 0,
    start: torch.Tensor | None = None,
    progress: ProgressHook | None = None,
) -> torch.Tensor:
    """Fill ``hole`` ``[H,W]`` of ``image`` ``[H,W,C]`` with patches copied from the image.

    ``source`` ``[H,W]`` bool marks where patches may come from (default: anywhere
    known); ``patch_size`` is the side of the compared square patches (odd, 3 to
    ``MAX_PATCH_SIZE``).
    ``start`` is an optional first guess for the coarsest level (else the smooth
    fill of the hole from its border). ``progress`` hears of each pyramid level
    done, and is asked between the search's passes whether to stop.
    """
    check_patch_size(patch_size)
    if source is not None and bool((source | hole).all()):
        source = None  # allows every known pixel: as if none were given (a tiny frame may
        # have no 3x3 neighbourhood, which a real exclusion needs; see _votable)
    allowed = ~hole if source is None else (source & ~hole)
    if not bool(allowed.any()):
        raise UncropError(
            "source_mask: leaves no known pixels to copy patches from; allow some of the "
            "area outside the mask."
        )
    if source is not None and not _votable(allowed):
        raise UncropError(
            "source_mask: allows no pixel whose 3x3 neighbourhood is allowed too; allow an "
            "area at least 3 px wide outside the mask."
        )
    check_memory(image, hole)
    work = at_least_float32(image)
    hook = or_null(progress)
    gen = generator(seed)
    radius = patch_size // 2
    pyramid = [(work, hole, allowed)]
    # Coarsen only while the hole is thick: thin holes are best matched at full
    # resolution, where their surroundings are intact.
    while min(pyramid[-1][0].shape[:2]) // 2 >= COARSEST_SIDE and _thick(
        pyramid[-1][1], DEPTH_IN_PATCHES * (2 * radius + 1)
    ):
        nxt = _downsample(*pyramid[-1])
        if not (_votable(nxt[2]) if source is not None else bool(nxt[2].any())):
            break
        pyramid.append(nxt)
    filled: torch.Tensor | None = None
    prev_weight: torch.Tensor | None = None
    nnf: torch.Tensor | None = None
    prev_shape: tuple[int, int] | None = None
    depth_count = len(pyramid)
    for depth in range(depth_count - 1, -1, -1):
        values, lvl_hole, lvl_source = pyramid[depth]
        if not bool(lvl_hole.any()):
            filled, nnf, prev_shape = values, None, None
            prev_weight = None if source is None else lvl_source
            continue
        hook.check_interrupted()
        level = _Level(values, lvl_hole, lvl_source, radius)
        level.fit_features(gen)
        search = _Search(level, gen, hook)
        last = depth == 0
        if filled is None:
            # Smoothed in from the allowed pixels alone: the low frequencies of the
            # fill come from this guess, and excluded colours must not reach it.
            guess = smooth_fill(values, ~lvl_source, progress=hook) if start is None else start
        else:
            guess = _upsample(filled, values.shape[:2], prev_weight)
        current = begin = torch.where(lvl_hole.unsqueeze(-1), guess, values)
        if nnf is None or prev_shape is None:
            nnf = search.random_field()
            rounds, coarsest = COARSE_ROUNDS, True
        else:
            nnf = search.upsampled_field(nnf, prev_shape)
            search.evaluate(current, nnf)
            current = search.vote(nnf)
            rounds, coarsest = FINE_ROUNDS, False
        for i in range(rounds):
            first = coarsest and i == 0
            nnf = search.run(current, nnf, GLOBAL_ITERATIONS if first else 1, first)
            current = search.vote(nnf, sharp=last and i == rounds - 1)
        if last:
            current = search.anchored(current, begin)
        filled, prev_shape = current, (level.h, level.w)
        # Excluded pixels are left out of the next level's start.
        prev_weight = None if source is None else (lvl_hole | lvl_source)
        hook.update(depth_count - depth, depth_count)
    assert filled is not None
    return torch.where(hole.unsqueeze(-1), filled.to(image.dtype), image)
