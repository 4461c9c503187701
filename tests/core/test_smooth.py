"""Smooth fill internals: the tiled solve for sparse masks, halos, stopping rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uncrop.core import smooth as sm
from uncrop.core.errors import UncropError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _strokes(h: int, w: int) -> torch.Tensor:
    """Two thin crossing strokes, one touching the frame edge, and a small blob."""
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[20:23, :] = True
    hole[:, 50:52] = True
    hole[60:70, 10:18] = True
    return hole


def _force(monkeypatch: pytest.MonkeyPatch, tiled: bool) -> None:
    """Take the tiled or the dense grid solve, never the thin-hole one."""
    monkeypatch.setattr(sm, "TILED_BELOW", 2.0 if tiled else 0.0)
    monkeypatch.setattr(sm, "THIN_DEPTH", 0)


def _spy_thin(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    used: list[int] = []
    real = sm._solve_thin
    monkeypatch.setattr(sm, "_solve_thin", lambda *a: used.append(1) or real(*a))
    return used


def _direct(
    image: torch.Tensor, hole: torch.Tensor, lam: float, clamp: bool = True
) -> torch.Tensor:
    """The thin-plate system assembled densely and solved directly: the hole's values,
    clamped to each component's border range as :func:`smooth_fill` does (``clamp``)."""
    h, w, _ = image.shape

    def lap(u: torch.Tensor) -> torch.Tensor:
        p = F.pad(u.movedim(-1, 0)[None], (1, 1, 1, 1), mode="replicate")[0]
        c = p[:, 1:-1, 1:-1]
        n = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
        return (4 * c - n).movedim(0, -1)

    def op(u: torch.Tensor) -> torch.Tensor:
        return (lap(lap(u)) + lam * lap(u))[hole]

    idx = torch.nonzero(hole.flatten()).flatten()
    known = torch.where(hole.unsqueeze(-1), 0.0, image)
    cols = []
    for i in idx.tolist():
        e = torch.zeros(h * w, 1, dtype=torch.float64)
        e[i] = 1
        cols.append(op(e.reshape(h, w, 1))[:, 0])
    full = image.clone()
    full[hole] = torch.linalg.solve(torch.stack(cols, dim=1), -op(known))
    return sm._Bounds(full, hole).clamp(full[hole], hole) if clamp else full[hole]


def test_dense_solve_matches_a_direct_solve(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch, device: torch.device
) -> None:
    """The multigrid result is the exact solution of the discrete thin-plate system."""
    _force(monkeypatch, tiled=False)
    image = astronaut[0, 200:240, 200:240].double().contiguous()
    hole = torch.zeros(40, 40, dtype=torch.bool)
    hole[8:30, 0:17] = True  # touches the frame edge (reflecting boundary)
    hole[12:20, 17:21] = True  # not a rectangle: the multigrid, not _Rectangle
    assert sm._rectangle(hole) is None
    out = sm.smooth_fill(image.to(device), hole.to(device), 0.02, 200, 1e-10).cpu()
    assert (out[hole] - _direct(image, hole, 0.02)).abs().max() < 1e-6
    assert torch.equal(out[~hole], image[~hole])


def _spy_rect(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rectangle preconditioner's applications."""
    used: list[int] = []
    real = sm._Rectangle.__call__
    monkeypatch.setattr(sm._Rectangle, "__call__", lambda *a: used.append(1) or real(*a))
    return used


@pytest.mark.parametrize(
    ("rows", "cols"),
    [
        ((9, 31), (12, 35)),  # closed
        ((0, 22), (10, 30)),  # on the top frame edge
        ((0, 40), (25, 40)),  # a band: three frame edges
        ((5, 40), (0, 14)),  # a corner
    ],
)
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_rectangle_solve_matches_a_direct_solve(
    astronaut: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    rows: tuple[int, int],
    cols: tuple[int, int],
    lam: float,
    device: torch.device,
) -> None:
    """A rectangular hole takes _Rectangle, which is nearly the inverse (reflecting
    frame edges included): the exact solution in a few CG steps."""
    _force(monkeypatch, tiled=False)
    used = _spy_rect(monkeypatch)
    image = astronaut[0, 240:280, 200:240].double().contiguous()
    hole = torch.zeros(40, 40, dtype=torch.bool)
    hole[slice(*rows), slice(*cols)] = True
    assert sm._rectangle(hole) == (*rows, *cols)
    out = sm.smooth_fill(image.to(device), hole.to(device), lam, 200, 1e-10).cpu()
    assert (out[hole] - _direct(image, hole, lam)).abs().max() < 1e-8
    assert torch.equal(out[~hole], image[~hole])
    assert 0 < len(used) <= 12  # the multigrid takes 30 or more to 1e-10


def test_rectangle_solve_at_default_settings_is_converged(astronaut: torch.Tensor) -> None:
    """The residual of the near-exact preconditioner falls faster than the error, so the
    default stop is tighter there (RECT_RTOL_FACTOR): a photo's block lands within
    0.1/255 of the converged fill (at the plain rtol, 0.2/255 off here, 2.5 on bench blocks)."""
    image = astronaut[0, 150:278, 180:308].contiguous()
    hole = torch.zeros(128, 128, dtype=torch.bool)
    hole[30:98, 25:100] = True  # 34 px deep: the grids' (or here the rectangle's) solve
    converged = sm.smooth_fill(image, hole, iterations=500, rtol=1e-10)
    default = sm.smooth_fill(image, hole)
    assert float((default - converged).abs().max()) < 0.1 / 255


def test_long_rectangles_take_the_multigrid(monkeypatch: pytest.MonkeyPatch) -> None:
    hole = torch.zeros(40, 60, dtype=torch.bool)
    hole[10:30, 5:55] = True
    assert sm._rectangle(hole) == (10, 30, 5, 55)
    monkeypatch.setattr(sm, "RECT_SIDE", 49)
    assert sm._rectangle(hole) is None


def test_tiled_solve_matches_a_direct_solve(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch, device: torch.device
) -> None:
    """Small tiles, so there are several tiled levels and a dense bottom."""
    _force(monkeypatch, tiled=True)
    monkeypatch.setattr(sm, "TILE", 8)
    used = []
    real = sm._solve_tiles
    monkeypatch.setattr(sm, "_solve_tiles", lambda *a: used.append(1) or real(*a))
    image = astronaut[0, 100:140, 300:372].double().contiguous()
    hole = torch.zeros(40, 72, dtype=torch.bool)
    hole[10:13, 0:40] = True  # reaches the frame edge (reflecting boundary)
    hole[5:30, 55:58] = True
    hole[25:31, 20:27] = True
    lam = 0.02
    out = sm.smooth_fill(image.to(device), hole.to(device), lam, 300, 1e-11).cpu()
    assert used, "the tiled solver was not used"
    assert (out[hole] - _direct(image, hole, lam)).abs().max() < 1e-6
    assert torch.equal(out[~hole], image[~hole])


def test_tiled_and_dense_solves_agree(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = astronaut[0, 180:300, 150:270].contiguous()
    hole = _strokes(120, 120)
    outs = []
    for tiled in (True, False):
        _force(monkeypatch, tiled)
        outs.append(sm.smooth_fill(image, hole, tension=0.01, iterations=200, rtol=1e-7))
    assert (outs[0] - outs[1]).abs().max() < 1e-4
    # The default (capped, early-stopping) solve is already close to converged.
    _force(monkeypatch, tiled=True)
    quick = sm.smooth_fill(image, hole, tension=0.01, iterations=16)
    assert (quick - outs[1]).abs().max() < 2 / 255


@pytest.mark.parametrize("path", ["tiled", "thin", "rect"])
def test_solve_reproduces_a_linear_ramp(
    monkeypatch: pytest.MonkeyPatch, path: str, device: torch.device
) -> None:
    used = _spy_thin(monkeypatch)
    rect = _spy_rect(monkeypatch)
    if path == "tiled":
        _force(monkeypatch, tiled=True)
    h, w = 120, 120
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ramp = torch.stack([0.1 + 0.006 * yy + 0.001 * xx, 0.9 - 0.004 * xx, 0.3 + 0.002 * yy], -1)
    if path == "rect":
        hole = torch.zeros(h, w, dtype=torch.bool)
        hole[30:90, 25:95] = True
    else:
        hole = _strokes(h, w)
        hole[:, 50:52] = False  # keep the ramp off the frame edge, where it is not a solution
        hole[20:23, :5] = False
        hole[20:23, -5:] = False
    out = sm.smooth_fill(ramp.float().to(device), hole.to(device)).cpu()
    assert bool(used) == (path == "thin")
    assert bool(rect) or path != "rect"
    assert (out - ramp).abs().max() < 1e-5


def test_halo_reads_the_neighbouring_tiles() -> None:
    gen = torch.Generator().manual_seed(0)
    hole = torch.rand(50, 70, generator=gen) > 0.97
    hole[:, 40:] = False  # whole tiles without hole are not stored
    tiles = sm._active_tiles(hole)
    lv = sm._TileLevel(hole, sm.TILE, tiles, torch.float32)
    assert lv.n < tiles[2] * tiles[3]
    field = torch.rand(3, lv.t * tiles[2], lv.t * tiles[3], generator=gen)
    field[:, :50, :70] *= hole
    field[:, 50:] = 0
    field[:, :, 70:] = 0
    stack = lv.from_dense(field)
    assert torch.equal(lv.scatter(stack), field)
    for halo in (1, 2):
        assert torch.equal(lv.halo(stack, halo), lv.gather(field, halo))
    # The Laplacian on tiles is the dense one (replicated edges) on the box.
    dense = sm._laplace(field[:, :50, :70]) * hole
    tiled = lv.scatter(lv.laplace(stack))[:, :50, :70]
    assert torch.allclose(tiled, dense, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 96), (75, 101)])
def test_tiled_laplacian_reads_across_tiles_as_the_halo_does(shape: tuple[int, int]) -> None:
    """The Laplacian from the neighbours' edges is the one on the gathered halo, to the
    bit, on every level: tiles with and without listed neighbours, box edges inside
    tiles, and values in every stored pixel (not only the hole's)."""
    h, w = shape
    gen = torch.Generator().manual_seed(3)
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[4:24, 3:90] = True  # a row of tiles
    hole[20:, 36:56] = True  # a column crossing it, to the bottom edge
    hole[-16:, -20:] = True  # a lone tile in the corner, at the box's edges
    mg = sm._TiledMultigrid(hole, sm._active_tiles(hole), torch.float32)
    assert len(mg.levels) >= 3
    for lv in mg.levels:
        assert any(bool((listed == 0).any()) for _other, listed in lv._across)
        e = torch.randn(3, lv.n, lv.t, lv.t, generator=gen)
        for masked in (False, True):
            halo = sm._laplace_tiles(lv.halo(e, 1), lv.deg)
            if masked:
                halo = halo * lv.mask
            assert torch.equal(lv.laplace(e, masked), halo)


def test_sparse_masks_take_the_tiled_path() -> None:
    hole = torch.zeros(512, 512, dtype=torch.bool)
    hole[100:104, 20:500] = True
    hole[30:480, 300:303] = True
    ty, _tx, ny, nx = sm._active_tiles(hole)
    assert ty.numel() * sm.TILE**2 < sm.TILED_BELOW * 512 * 512
    assert ny == nx == 512 // sm.TILE


def test_pcg_stops_on_small_steps() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(3, 1, 6, 6, generator=gen)
    diag = 1 + 10 * a  # a diagonal system: x = b / diag
    b = torch.rand(3, 1, 6, 6, generator=gen)
    applied = []

    def apply(p: torch.Tensor) -> torch.Tensor:
        applied.append(1)
        return diag * p

    x = sm._pcg(apply, lambda r: r, torch.zeros_like(b), b.clone(), 50, 1e-12, dims=(1, 2, 3))
    full = len(applied)
    assert torch.allclose(x, b / diag, atol=1e-5)
    applied.clear()
    sm._pcg(apply, lambda r: r, torch.zeros_like(b), b.clone(), 50, 1e-12, 1.0, dims=(1, 2, 3))
    assert len(applied) < full


@pytest.mark.parametrize("shape", [(64, 96), (63, 97)])
def test_tiled_v_cycle_is_the_dense_one(shape: tuple[int, int]) -> None:
    """Same smoothing, transfers (replicated frame edges included) and coarse grids."""
    h, w = shape
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[10:14, :] = True  # touches both side edges
    hole[:, 40:43] = True
    hole[30:50, 60:80] = True
    hole[-5:, 5:30] = True  # touches the bottom edge
    tiled = sm._TiledMultigrid(hole, sm._active_tiles(hole), torch.float64)
    dense = sm._Multigrid(hole, torch.float64)
    assert len(tiled.levels) > 1 and tiled.dense is not None
    gen = torch.Generator().manual_seed(0)
    r = torch.rand(3, h, w, generator=gen, dtype=torch.float64) * hole
    lv = tiled.levels[0]
    out = lv.scatter(tiled.cycle(lv.gather(r, 0)))[:, :h, :w]
    assert torch.allclose(out, dense.cycle(r), atol=1e-12)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-9), (torch.float32, 1e-6)])
def test_thin_solve_matches_a_direct_solve(
    astronaut: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    dtype: torch.dtype,
    tol: float,
    device: torch.device,
) -> None:
    """Strokes thin enough, one along the frame edge: solved on their pixels, exactly
    (factorised in float64 whatever the image's precision)."""
    used = _spy_thin(monkeypatch)
    image = astronaut[0, 100:140, 300:372].to(dtype).contiguous()
    hole = torch.zeros(40, 72, dtype=torch.bool)
    hole[0:4, 10:50] = True  # on the frame edge: reflecting boundary
    hole[15:22, 5:60] = True  # 7 wide: 4 deep
    hole[20:38, 64:66] = True
    out = sm.smooth_fill(image.to(device), hole.to(device), tension=0.02).cpu()
    assert used, "the thin-hole solver was not used"
    assert out.dtype == dtype
    assert (out[hole] - _direct(image.double(), hole, 0.02)).abs().max() < tol
    assert torch.equal(out[~hole], image[~hole])


def test_thin_holes_each_get_their_own_tension(astronaut: torch.Tensor) -> None:
    """A band open to the frame edge and a scratch inside, solved directly box by box:
    each with the default tension for its kind (the band OPEN_TENSION_FACTOR times the
    frame's, the closed scratch none: the pure biharmonic)."""
    image = astronaut[0, 200:264, 200:296].double().contiguous()
    band = torch.zeros(64, 96, dtype=torch.bool)
    band[:, :6] = True
    scratch = torch.zeros(64, 96, dtype=torch.bool)
    scratch[20:22, 40:80] = True  # 1 px deep: a scratch at any frame size
    out = sm.smooth_fill(image, band | scratch)
    lam = sm.TENSION_AT_512 * (512 / 96) ** 2
    assert (out[band] - _direct(image, band, lam * sm.OPEN_TENSION_FACTOR)).abs().max() < 1e-9
    assert (out[scratch] - _direct(image, scratch, 0.0)).abs().max() < 1e-9
    assert (out[scratch] - _direct(image, scratch, lam)).abs().max() > 1e-6
    assert (out[band] - _direct(image, band, lam)).abs().max() > 1e-4  # the tension tells


@pytest.mark.parametrize("side", [512, 256])
def test_closed_holes_take_their_tension_by_depth(astronaut: torch.Tensor, side: int) -> None:
    """Closed holes by their depth at the frame's scale (STROKE_DEPTH is in px at 512):
    a scratch takes no tension, a stroke the open holes' (OPEN_TENSION_FACTOR times the
    frame's), a deeper hole the frame's; the same shapes scaled with the frame take the
    same tensions."""

    def px(v: int) -> int:
        return v * side // 512

    image = astronaut[0, : px(160), :side].double().contiguous()
    holes = {name: torch.zeros(px(160), side, dtype=torch.bool) for name in ("s", "t", "b")}
    holes["s"][px(20) : px(24), px(40) : px(140)] = True  # 4 px wide at 512: 2 deep
    holes["t"][px(60) : px(84), px(40) : px(200)] = True  # 24 wide: 12 deep
    holes["b"][px(40) : px(140), px(280) : px(380)] = True  # 100 wide: 50 deep
    assert sm.STROKE_DEPTH[0] < 12 < sm.STROKE_DEPTH[1] < 50
    out = sm.smooth_fill(image, holes["s"] | holes["t"] | holes["b"])
    lam = sm.TENSION_AT_512 * (512 / side) ** 2
    want = {"s": 0.0, "t": lam * sm.OPEN_TENSION_FACTOR, "b": lam}
    other = {"s": lam, "t": lam, "b": lam * sm.OPEN_TENSION_FACTOR}
    for name, hole in holes.items():
        alone = sm.smooth_fill(image, hole, tension=want[name])[hole]
        assert (out[hole] - alone).abs().max() < 1e-6, name
        wrong = sm.smooth_fill(image, hole, tension=other[name])[hole]
        assert (out[hole] - wrong).abs().max() > 1e-4, name  # the tension tells


def test_deeper_closed_holes_take_the_frame_tension(astronaut: torch.Tensor) -> None:
    """Past THIN_DEPTH a closed hole is pulled towards the harmonic fill: the default
    is the frame's tension, not the scratches' zero."""
    image = astronaut[0, 100:196, 100:196].contiguous()
    hole = torch.zeros(96, 96, dtype=torch.bool)
    d = sm.THIN_DEPTH + 2
    hole[48 - d : 48 + d, 48 - d : 48 + d] = True
    lam = sm.TENSION_AT_512 * (512 / 96) ** 2
    out = sm.smooth_fill(image, hole)
    assert torch.equal(out, sm.smooth_fill(image, hole, tension=lam))
    assert (out - sm.smooth_fill(image, hole, tension=0.0)).abs().max() > 1e-4


def test_clamp_keeps_each_component_within_its_own_border() -> None:
    """Two components, each clamped per channel to the known pixels touching it (a
    diagonal neighbour counts), not to the other's; values inside the range stay."""
    image = torch.zeros(6, 9, 2)
    image[..., 0] = 0.5
    image[:, :4, 1] = 0.2  # left half: channel 1 around 0.2-0.3
    image[0, 0, 1] = 0.3
    image[:, 5:, 1] = 0.7  # right half: 0.6-0.7, one border pixel only diagonal
    image[4, 8, 1] = 0.6
    hole = torch.zeros(6, 9, dtype=torch.bool)
    hole[1:3, 1:3] = True
    hole[3, 7] = True
    filled = image.clone()
    filled[1, 1] = torch.tensor([0.9, 0.25])  # channel 0 too bright, channel 1 in range
    filled[2, 2] = torch.tensor([0.5, 0.95])
    filled[1, 2] = torch.tensor([0.1, 0.0])
    filled[2, 1] = torch.tensor([0.5, 0.25])
    filled[3, 7] = torch.tensor([0.5, 0.1])
    out = filled.clone()
    out[hole] = sm._Bounds(filled, hole).clamp(filled[hole], hole)
    assert out[1, 1].tolist() == pytest.approx([0.5, 0.25])
    assert out[2, 2].tolist() == pytest.approx([0.5, 0.3])
    assert out[1, 2].tolist() == pytest.approx([0.5, 0.2])
    assert out[2, 1].tolist() == pytest.approx([0.5, 0.25])
    assert out[3, 7].tolist() == pytest.approx([0.5, 0.6])
    assert torch.equal(out[~hole], image[~hole])


@pytest.mark.parametrize("halved", [False, True])
@pytest.mark.parametrize("bands", [1, 2])
def test_smooth_fill_does_not_overshoot_its_border(
    halved: bool, bands: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band across the top of a ridge: the thin-plate continues both slopes
    upwards, above the border's values; the fill stops at the border's maximum.
    Also at half size (the inside written densely when the hole is one component,
    pixel by pixel when it is several) and with a second band on another ridge."""
    x = torch.arange(64, dtype=torch.float64)
    image = (0.9 - 0.02 * (x - 32).abs()).expand(64, 64)[..., None].repeat(1, 1, 3)
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[:, 24:41] = True  # top to bottom: the border is columns 23 and 41 (0.72)
    if bands == 2:  # a lower ridge beside it: its band clamps to its own border (0.52)
        image = torch.cat([image, image - 0.2], dim=1)
        hole = torch.cat([hole, hole], dim=1)
    raw = _direct(image, hole, 0.0, clamp=False)
    assert float(raw.max()) > 0.75  # the unclamped solve overshoots
    if halved:
        _halve_below(monkeypatch, 6)
        used = _spy_coarse(monkeypatch)
    out = sm.smooth_fill(image, hole, tension=0.0)
    assert not halved or used
    left = hole.clone()
    left[:, 64:] = False
    assert float(out[left].max()) == pytest.approx(0.72)
    assert float(out[left].min()) == pytest.approx(0.72)
    if bands == 2:
        assert float(out[hole & ~left].max()) == pytest.approx(0.52)


def test_only_thin_holes_take_the_thin_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy_thin(monkeypatch)
    depth = sm.THIN_DEPTH
    image = torch.rand(128, 128, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(128, 128, dtype=torch.bool)
    hole[20 : 22 + 2 * depth, 10:110] = True  # its middle rows are depth + 1 from known ones
    sm.smooth_fill(image, hole)
    assert not used
    hole[20 + 2 * depth : 22 + 2 * depth] = False  # every pixel within depth of a known one
    sm.smooth_fill(image, hole)
    assert used


def test_thin_holes_apart_are_solved_together_as_each_alone(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Specks (a dust mask) and a stroke, in their own boxes around a deep hole: one thin
    solve for them all (4096 specks took 4096, 2.4 s at 512 px), each filled as alone."""
    image = astronaut[0, 100:228, 100:228].double().contiguous()
    specks = torch.zeros(128, 128, dtype=torch.bool)
    specks[4::12, 4::12] = True
    specks[40:90, 40:90] = False
    stroke = torch.zeros(128, 128, dtype=torch.bool)
    stroke[105:107, 20:60] = True  # between rows of specks, 5 px from each
    deep = torch.zeros(128, 128, dtype=torch.bool)
    d = sm.THIN_DEPTH + 2
    deep[64 - d : 64 + d, 64 - d : 64 + d] = True
    used = _spy_thin(monkeypatch)
    out = sm.smooth_fill(image, specks | stroke | deep)
    assert len(used) == 1
    for alone in (stroke, deep, specks):
        assert (out[alone] - sm.smooth_fill(image, alone)[alone]).abs().max() < 1e-9
    one = torch.zeros_like(specks)
    one[16, 16] = True
    assert (out[one] - sm.smooth_fill(image, one)[one]).abs().max() < 1e-9


def test_thin_and_grid_solves_agree(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = astronaut[0, 180:300, 150:270].contiguous()
    hole = _strokes(120, 120)
    used = _spy_thin(monkeypatch)
    thin = sm.smooth_fill(image, hole, tension=0.01)
    assert used
    _force(monkeypatch, tiled=True)
    grid = sm.smooth_fill(image, hole, tension=0.01, iterations=200, rtol=1e-7)
    assert (thin - grid).abs().max() < 1e-5  # the same system, solved two ways


def _fence(size: int, period: int, wire: int) -> torch.Tensor:
    """Wires ``wire`` px wide every ``period`` px, both ways (a fence to remove)."""
    at = (torch.arange(size) + period // 2) % period < wire
    return at[:, None] | at[None, :]


def test_big_thin_holes_are_solved_in_pieces(
    astronaut: torch.Tensor, monkeypatch: pytest.MonkeyPatch, device: torch.device
) -> None:
    """A thin hole of over THIN_WHOLE pixels is factorised in overlapping pieces, each
    grown by THIN_HALO_FACTOR times the hole's depth: the same fill, to 0.001/255."""
    image = astronaut[0, 100:292, 150:342].double().contiguous()
    hole = _fence(192, 20, 6)
    whole = sm.smooth_fill(image, hole)
    pieces: list[int] = []
    real = sm._factorise_thin
    monkeypatch.setattr(sm, "_factorise_thin", lambda *a: pieces.append(1) or real(*a))
    monkeypatch.setattr(sm, "THIN_WHOLE", 1000)
    monkeypatch.setattr(sm, "THIN_PIECE", 32)  # pieces of 6 x 23 px, the halo's minimum
    out = sm.smooth_fill(image.to(device), hole.to(device)).cpu()
    assert (out - whole).abs().max() < 0.001 / 255
    assert len(pieces) == 4
    assert torch.equal(out[~hole], image[~hole])


def test_pieces_of_a_thin_hole_can_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm, "THIN_WHOLE", 1000)
    monkeypatch.setattr(sm, "THIN_PIECE", 32)  # 9 pieces
    image = torch.rand(256, 256, 3, generator=torch.Generator().manual_seed(0))
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sm._solve_thin(image, _fence(256, 16, 4), 0.0, check)
    assert len(calls) == 2  # asked before each piece


def _halve_below(monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    """Halve holes deeper than ``depth`` (and solve only those no deeper than the rim
    directly, so the ones in between take the grids, as real ones do)."""
    monkeypatch.setattr(sm, "COARSE_DEPTH", depth)
    monkeypatch.setattr(sm, "THIN_DEPTH", sm.RIM_DEPTH)


def _spy_coarse(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    used: list[int] = []
    real = sm._coarse_fill
    monkeypatch.setattr(sm, "_coarse_fill", lambda *a: used.append(1) or real(*a))
    return used


@pytest.mark.parametrize(("width", "halved"), [(30, False), (34, True)])
def test_only_holes_deeper_than_the_limit_are_halved(
    monkeypatch: pytest.MonkeyPatch, width: int, halved: bool
) -> None:
    """A stroke 30 px wide is 15 px deep, one 34 px wide 17: the limit is 16."""
    _halve_below(monkeypatch, 16)
    used = _spy_coarse(monkeypatch)
    image = torch.rand(120, 120, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(120, 120, dtype=torch.bool)
    hole[40 : 40 + width, 10:110] = True
    out = sm.smooth_fill(image, hole)
    assert bool(used) == halved
    assert torch.equal(out[~hole], image[~hole])


def test_big_boxes_of_shallow_hole_are_halved(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strokes no deeper than COARSE_DEPTH but with more than COARSE_PIXELS hole pixels
    in their box are halved; a box of fewer, or a thin one, is not."""
    image = torch.rand(120, 120, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(120, 120, dtype=torch.bool)
    hole[20:60, 10:110] = True  # 20 px deep: past THIN_DEPTH, short of COARSE_DEPTH
    n = int(hole.sum())
    used = _spy_coarse(monkeypatch)
    monkeypatch.setattr(sm, "COARSE_PIXELS", n)
    sm.smooth_fill(image, hole)
    assert not used
    monkeypatch.setattr(sm, "COARSE_PIXELS", n - 1)
    out = sm.smooth_fill(image, hole)
    assert used
    assert torch.equal(out[~hole], image[~hole])
    used.clear()
    monkeypatch.setattr(sm, "COARSE_PIXELS", 1)
    sm.smooth_fill(image, hole & (torch.arange(120)[:, None] < 50))  # 15 px deep: thin
    assert not used


def test_deep_hole_at_half_size_reproduces_a_linear_ramp(monkeypatch: pytest.MonkeyPatch) -> None:
    _halve_below(monkeypatch, 8)
    used = _spy_coarse(monkeypatch)
    h, w = 120, 130
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ramp = torch.stack([0.1 + 0.006 * yy + 0.001 * xx, 0.9 - 0.004 * xx, 0.3 + 0.002 * yy], -1)
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[31:94, 25:101] = True  # odd sides and offsets: halving is not aligned with it
    out = sm.smooth_fill(ramp.float(), hole, iterations=200, rtol=1e-7)
    assert len(used) >= 2  # 31 px deep: halved until it is no deeper than 8
    assert (out - ramp).abs().max() < 1e-5


@pytest.mark.parametrize("open_edge", [False, True])
def test_deep_hole_at_half_size_is_close_to_the_full_size_solve(
    monkeypatch: pytest.MonkeyPatch, open_edge: bool
) -> None:
    """On smooth content the half-size inside and the full-size rim around it come
    close to the full-size solve (with the tension not scaled to the half-size
    pixels, the mean gap is 2-3/255)."""
    h = w = 256
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    image = torch.stack(
        [
            0.5 + 0.3 * torch.sin(xx / 15) * torch.cos(yy / 20),
            0.5 + 0.2 * torch.cos((xx + yy) / 25),
            0.4 + 0.002 * xx,
        ],
        -1,
    )
    hole = torch.zeros(h, w, dtype=torch.bool)
    if open_edge:
        hole[:, 170:] = True  # an outpaint band, open to three frame edges
    else:
        hole[48:208, 48:208] = True
    full = sm.smooth_fill(image, hole, tension=0.01)
    monkeypatch.setattr(sm, "COARSE_DEPTH", 64)
    used = _spy_coarse(monkeypatch)
    half = sm.smooth_fill(image, hole, tension=0.01)
    assert len(used) == 1
    assert torch.equal(half[~hole], image[~hole])
    gap = (half - full)[hole].abs()
    assert float(gap.mean()) < 1.2 / 255 and float(gap.max()) < 5 / 255


def test_one_known_row_is_halved_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """No 2x2 block is wholly known, so at half size a pixel with any known child counts
    as known: the hole is still halved (a 2048 px frame: 57 s to 1.3 s), and on smooth
    content lands close to the full-size solve."""
    h, w = 96, 120
    xx = torch.arange(w).float()[None, :].expand(h, w)
    image = torch.stack([0.5 + 0.3 * torch.sin(xx / 9), 0.4 + 0.003 * xx, 0.6 - 0.002 * xx], -1)
    hole = torch.ones(h, w, dtype=torch.bool)
    hole[37] = False
    full = sm.smooth_fill(image, hole, tension=0.01)
    _halve_below(monkeypatch, 8)
    used = _spy_coarse(monkeypatch)
    half = sm.smooth_fill(image, hole, tension=0.01)
    assert len(used) >= 2
    assert torch.equal(half[37], image[37])
    gap = (half - full).abs()
    assert float(gap.mean()) < 1 / 255 and float(gap.max()) < 6 / 255  # 0.56 and 4.75


def test_a_hole_with_almost_nothing_known_around_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """One known pixel: at every half size, the pixel it falls in is the known one."""
    _halve_below(monkeypatch, 8)
    image = torch.rand(60, 70, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.ones(60, 70, dtype=torch.bool)
    hole[0, 0] = False
    out = sm.smooth_fill(image, hole)
    assert (out - image[0, 0]).abs().max() < 0.01  # the only colour there is
    hole[0, 0] = True
    with pytest.raises(UncropError, match="mask: covers the whole image"):
        sm.smooth_fill(image, hole)


@pytest.mark.parametrize("tension", [-0.1, float("nan"), float("inf"), 1e38, True, "0.1"])
def test_a_tension_outside_0_to_max_is_refused(tension) -> None:
    # 1e38 is finite, but the half-size solve's 4x overflowed float32: a NaN fill.
    image = torch.rand(300, 300, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(300, 300, dtype=torch.bool)
    hole[10:290, 10:290] = True
    with pytest.raises(UncropError, match="tension: expected a number from 0 to 1e"):
        sm.smooth_fill(image, hole, tension=tension)


def test_the_largest_tension_gives_a_finite_membrane_fill() -> None:
    y, x = torch.meshgrid(torch.arange(300.0), torch.arange(300.0), indexing="ij")
    image = torch.stack([x / 300, y / 300, (x + y) / 600], -1)
    hole = torch.zeros(300, 300, dtype=torch.bool)
    hole[10:290, 10:290] = True
    out = sm.smooth_fill(image, hole, tension=sm.MAX_TENSION)
    assert (out - image).abs().max() < 1e-4  # a ramp is harmonic: the membrane keeps it
