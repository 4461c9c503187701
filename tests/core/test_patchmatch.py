"""PatchMatch fill internals: morphology, pyramid depth, edge continuation, sources."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uncrop.core import patchmatch as pm
from uncrop.core.errors import UncropError
from uncrop.core.progress import NullProgress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _levels_used(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    shapes: list[tuple[int, int]] = []
    original = pm._Level.__init__

    def record(self, image, hole, source, radius):
        shapes.append(tuple(image.shape[:2]))
        original(self, image, hole, source, radius)

    monkeypatch.setattr(pm._Level, "__init__", record)
    return shapes


def test_thickness_counts_the_frame_edge_as_unknown() -> None:
    stripe = torch.zeros(64, 64, dtype=torch.bool)
    stripe[:, 20:31] = True  # 11 px wide: the middle pixel is 6 px from known
    assert pm._thick(stripe, 5)
    assert not pm._thick(stripe, 6)
    band = torch.zeros(64, 64, dtype=torch.bool)
    band[:, :6] = True  # open to the left frame edge: 6 px from known at the edge
    assert pm._thick(band, 5)
    assert not pm._thick(band, 6)


def test_thin_holes_stay_at_full_resolution(
    brick: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = _levels_used(monkeypatch)
    image = brick[0, :256, :256].contiguous()
    hole = torch.zeros(256, 256, dtype=torch.bool)
    hole[100:108, 20:230] = True  # an 8 px stroke
    pm.patch_fill(image, hole, seed=0)
    assert shapes == [(256, 256)]
    shapes.clear()
    hole = torch.zeros(256, 256, dtype=torch.bool)
    hole[60:200, 60:200] = True  # a 140 px block is started on a coarser level
    pm.patch_fill(image, hole, seed=0)
    assert shapes[0][0] < 256 and shapes[-1] == (256, 256)


def test_edges_are_continued_through_a_stroke() -> None:
    """A stroke across a straight dark/light edge: the edge must stay where it was."""
    gen = torch.Generator().manual_seed(3)
    h, w = 96, 128
    rows = torch.arange(h).view(-1, 1, 1).expand(h, w, 3)
    image = torch.where(rows < 48, 0.2, 0.8) + 0.03 * torch.rand(h, w, 3, generator=gen)
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[10:86, 56:72] = True
    out = pm.patch_fill(image, hole, seed=0)
    top = out[10:46, 56:72].mean()
    bottom = out[50:86, 56:72].mean()
    assert abs(float(top) - 0.215) < 0.05
    assert abs(float(bottom) - 0.815) < 0.05
    err = (out - image)[hole].abs().mean()
    assert float(err) < 0.06


def test_known_pixels_identical_deterministic_and_half_precision(
    coffee: torch.Tensor, device: torch.device
) -> None:
    image = coffee[0, 100:228, 200:328].to(device).contiguous()
    hole = torch.zeros(128, 128, dtype=torch.bool, device=device)
    hole[30:90, 40:100] = True
    a = pm.patch_fill(image, hole, seed=7)
    b = pm.patch_fill(image, hole, seed=7)
    assert torch.equal(a, b)
    assert torch.equal(a[~hole], image[~hole])
    assert not torch.equal(a[hole], image[hole])
    half = pm.patch_fill(image.half(), hole, seed=7)
    assert half.dtype == torch.float16
    assert torch.equal(half[~hole], image.half()[~hole])


def test_votes_in_chunks_are_the_vote_in_one(
    coffee: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big holes are voted a chunk of pixels at a time: the same fill, to the bit."""
    image = coffee[0, 100:228, 200:328].contiguous()
    hole = torch.zeros(128, 128, dtype=torch.bool)
    hole[30:90, 40:100] = True
    hole[:, :6] = True  # on the frame edge, where some voting centres are off it
    whole = pm.patch_fill(image, hole, seed=7)
    monkeypatch.setattr(pm, "VOTE_CHUNK", 997)  # no divisor of the hole's pixel count
    assert torch.equal(pm.patch_fill(image, hole, seed=7), whole)


def test_excluded_source_never_copied_from_a_deep_pyramid(
    brick: torch.Tensor, device: torch.device
) -> None:
    image = brick[0, :256, :256].to(device, copy=True)
    magenta = torch.tensor([1.0, 0.0, 1.0], device=device)
    image[:, :60] = magenta
    hole = torch.zeros(256, 256, dtype=torch.bool, device=device)
    hole[50:210, 64:224] = True  # touches the magenta band's row range, several levels
    source = torch.ones(256, 256, dtype=torch.bool, device=device)
    source[:, :68] = False
    out = pm.patch_fill(image, hole, source, seed=2)
    assert float((out[hole] - magenta).abs().sum(dim=-1).min()) > 0.3


def _red_beside_a_hole(n: int, red: slice) -> tuple[torch.Tensor, ...]:
    """Green noise with a red band excluded as a source, and a hole next to it."""
    image = torch.zeros(n, n, 3)
    image[..., 1] = 0.8 + 0.1 * torch.rand(n, n, generator=torch.Generator().manual_seed(1))
    image[:, red] = torch.tensor([1.0, 0.0, 0.0])
    source = torch.ones(n, n, dtype=torch.bool)
    source[:, red] = False
    return image, source


def test_excluded_pixels_next_to_the_hole_do_not_tint_a_deep_fill() -> None:
    """The coarser level's result, upsampled into the next start, leaves them out."""
    image, source = _red_beside_a_hole(256, slice(150, 200))
    hole = torch.zeros(256, 256, dtype=torch.bool)
    hole[60:200, 40:150] = True
    out = pm.patch_fill(image, hole, source, seed=0)
    assert float(out[hole][:, 0].max()) < 0.01  # was 0.125 along the red side


def test_an_allowed_area_narrower_than_a_patch_is_copied_from_alone() -> None:
    image, source = _red_beside_a_hole(64, slice(0, 58))  # a 6 px allowed strip
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[10:50, 30:58] = True
    source[hole] = False
    out = pm.patch_fill(image, hole, source, patch_size=7, seed=0)
    assert float(out[hole][:, 0].max()) == 0.0
    source[:, :] = False
    source[:, 60:62] = True  # 2 px: no pixel has its 3x3 neighbourhood allowed
    with pytest.raises(UncropError, match="source_mask: allows no pixel whose 3x3"):
        pm.patch_fill(image, hole, source)


def test_a_source_mask_allowing_everything_works_on_a_strip_of_two_rows() -> None:
    """Votes read the frame's edge beyond it: allowing every pixel of a 2-row image was
    refused as leaving no 3x3 neighbourhood allowed, though it is giving no source mask."""
    image = torch.rand(2, 40, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(2, 40, dtype=torch.bool)
    hole[:, 18:22] = True
    everything = torch.ones(2, 40, dtype=torch.bool)
    out = pm.patch_fill(image, hole, everything, seed=0)
    assert torch.equal(out, pm.patch_fill(image, hole, None, seed=0))


def test_border_patches_are_more_confident_than_interior_ones() -> None:
    image = torch.rand(40, 40, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(40, 40, dtype=torch.bool)
    hole[10:30, 10:30] = True
    level = pm._Level(image, hole, ~hole, 3)
    conf = torch.zeros(40 * 40)
    conf[level.targets] = level.confidence
    conf = conf.view(40, 40)
    assert float(conf[20, 20]) == pytest.approx(pm.CONFIDENCE_FLOOR)
    assert float(conf[10, 20]) > 0.4  # on the border: three of seven rows known
    assert float(conf[9, 20]) > float(conf[10, 20]) > float(conf[13, 20])


def test_target_features_over_tiles_match_projected_patches(coffee: torch.Tensor) -> None:
    """Scattered targets across tile borders and the frame edge: the tiled convolution
    gives each target the projection of its own (edge-replicated) patch."""
    image = coffee[0, :150, :200].contiguous()
    gen = torch.Generator().manual_seed(1)
    hole = torch.rand(150, 200, generator=gen) > 0.995
    hole[0, 5] = hole[149, 199] = hole[63:66, 60:70] = True
    level = pm._Level(image, hole, ~hole, 3)
    level.fit_features(gen)
    expected = level.patches(image, level.targets) @ level.basis - level.offset
    assert torch.allclose(level.target_features(image), expected.T, atol=1e-5)
    every = level.patches(image, torch.arange(150 * 200)) @ level.basis - level.offset
    allowed = level.valid
    assert torch.allclose(level.source_features[:, allowed], every[allowed].T, atol=1e-5)


def test_target_features_of_a_box_of_whole_tiles(coffee: torch.Tensor) -> None:
    """Targets spanning exactly one tile, inside the frame: nothing to pad, so the tile
    view is taken of the image itself (channels last in memory) and must not assume
    a channels-first layout."""
    image = coffee[0, :150, :200].contiguous()
    hole = torch.zeros(150, 200, dtype=torch.bool)
    side = pm.TILE - 2 * pm.VOTE_RADIUS
    hole[41 : 41 + side, 51 : 51 + side] = True  # targets: the hole grown by VOTE_RADIUS
    level = pm._Level(image, hole, ~hole, 3)
    level.fit_features(torch.Generator().manual_seed(1))
    y0, y1, x0, x1 = level.box
    assert (y1 - y0, x1 - x0) == (pm.TILE, pm.TILE)
    expected = level.patches(image, level.targets) @ level.basis - level.offset
    assert torch.allclose(level.target_features(image), expected.T, atol=1e-5)


def test_anchoring_takes_the_local_mean_from_the_start() -> None:
    """A copy that is the start plus a constant offset comes back as the start; the
    detail of a copy around the start's mean is kept; known pixels are untouched."""
    gen = torch.Generator().manual_seed(0)
    start = 0.3 + 0.4 * torch.rand(40, 40, 3, generator=gen)
    hole = torch.zeros(40, 40, dtype=torch.bool)
    hole[10:30, 12:20] = True
    search = pm._Search(pm._Level(start, hole, ~hole, 3), gen, NullProgress())
    shifted = torch.where(hole.unsqueeze(-1), start + 0.2, start)
    assert torch.allclose(search.anchored(shifted, start), start, atol=1e-6)
    stripes = (torch.arange(40) % 2).view(1, 40, 1).float() * 0.2 - 0.1
    detailed = torch.where(hole.unsqueeze(-1), start + stripes, start)
    out = search.anchored(detailed, start)
    assert torch.equal(out[~hole], start[~hole])
    assert float((out - start)[hole].abs().mean()) > 0.05


@pytest.mark.parametrize("radius", [1, 2])
def test_box_sums_match_average_pooling(radius: int) -> None:
    x = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(radius))
    k = 2 * radius + 1
    pooled = F.avg_pool2d(x[None], k, 1, radius)[0] * k * k  # zero beyond the edge
    assert torch.allclose(pm._box_sum(x, radius), pooled, atol=1e-5)


def test_randomized_principal_directions_capture_the_exact_ones(coffee: torch.Tensor) -> None:
    """Past EXACT_PCA_DIMS (patch_size 15 and up) the directions come from a randomized
    subspace iteration: as much of the patches' variance as the exact eigenvectors,
    and the same directions for the same generator seed."""
    image = coffee[0, :160, :160].contiguous()
    hole = torch.zeros(160, 160, dtype=torch.bool)
    hole[70:90, 70:90] = True
    level = pm._Level(image, hole, ~hole, 7)
    pick = torch.randperm(160 * 160, generator=torch.Generator().manual_seed(0))[:3000]
    sample = level.patches(image, pick)  # [3000, 675]
    sample = sample - sample.mean(dim=0)
    assert sample.shape[1] > pm.EXACT_PCA_DIMS

    def captured(basis: torch.Tensor) -> float:
        return float((sample @ basis).square().sum() / sample.square().sum())

    gen = torch.Generator().manual_seed(3)
    fast = pm._principal_directions(sample, pm.FEATURES, gen)
    exact = torch.linalg.eigh((sample.T @ sample).double())[1][:, -pm.FEATURES :].flip(1)
    assert fast.shape == (675, pm.FEATURES)
    assert torch.allclose(fast.T @ fast, torch.eye(pm.FEATURES), atol=1e-4)  # orthonormal
    assert captured(fast) > 0.999 * captured(exact.float())
    again = pm._principal_directions(sample, pm.FEATURES, torch.Generator().manual_seed(3))
    assert torch.equal(fast, again)


def test_a_fill_too_big_for_free_memory_is_refused_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Run out of memory on the CPU and the system kills the process (ComfyUI with
    # it), with no message: the estimate is checked against what is free first.
    from uncrop.core.fill import fill

    image = torch.rand(1, 40, 50, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 40, 50)
    mask[:, 10:30, 10:30] = 1
    need = pm.PEAK_BYTES_PER_PIXEL * 40 * 50 + pm.PEAK_BYTES_PER_HOLE_PIXEL * 400
    started: list[int] = []
    real_level = pm._Level
    monkeypatch.setattr(pm, "_Level", lambda *a: started.append(1) or real_level(*a))
    monkeypatch.setattr(pm, "free_bytes", lambda device: need - 1)
    for method in ("patch", "pattern"):  # pattern falls back to patch on a photo
        with pytest.raises(UncropError, match=r"image: a patch fill of 50x40 px .* GiB is free"):
            fill(image, mask, method)
    assert not started
    monkeypatch.setattr(pm, "free_bytes", lambda device: need)
    assert fill(image, mask, "patch").shape == image.shape and started
    monkeypatch.setattr(pm, "free_bytes", lambda device: None)  # unknown: not refused
    fill(image, mask, "patch")


def test_free_memory_is_read_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    with_psutil = pm.free_bytes(torch.device("cpu"))
    monkeypatch.setitem(sys.modules, "psutil", None)  # as without psutil: /proc/meminfo
    from_proc = pm.free_bytes(torch.device("cpu"))
    if sys.platform.startswith("linux"):
        assert from_proc is not None and from_proc > 2**20
        assert with_psutil is not None and abs(with_psutil - from_proc) < 0.2 * from_proc
    monkeypatch.setattr(pm, "MEMINFO", "/nonexistent/meminfo")
    assert pm.free_bytes(torch.device("cpu")) is None
    assert pm.free_bytes(torch.device("meta")) is None
