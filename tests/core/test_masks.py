import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ProgressRecorder

from uncrop.core import masks
from uncrop.core.errors import UncropError


def dot(h=101, w=101, y=50, x=50):
    m = torch.zeros(1, h, w)
    m[0, y, x] = 1
    return m


@pytest.mark.parametrize("radius", [1, 2, 5, 12, 40])
def test_grow_is_close_to_a_disc(radius, device):
    grown = masks.grow(dot().to(device), radius)[0].cpu()
    ys, xs = torch.nonzero(grown, as_tuple=True)
    dist = ((ys - 50) ** 2 + (xs - 50) ** 2).float().sqrt()
    # Reaches exactly `radius` along the axes, never much past it on diagonals.
    assert int((grown[50] > 0).sum()) == 2 * radius + 1
    assert int((grown[:, 50] > 0).sum()) == 2 * radius + 1
    assert dist.max() <= radius * 1.1 + 0.5
    yy, xx = torch.meshgrid(torch.arange(101), torch.arange(101), indexing="ij")
    disc = ((yy - 50) ** 2 + (xx - 50) ** 2) <= radius**2
    differing = int(((grown > 0) ^ disc).sum())
    assert differing <= 0.08 * math.pi * radius**2 + 2 * radius  # an octagon, not a disc


def test_grow_reaches_past_border_without_losing_pixels():
    m = dot(50, 60, 0, 0)
    grown = masks.grow(m, 10)[0]
    assert int(grown[0].sum()) == 11 and int(grown[:, 0].sum()) == 11


@pytest.mark.parametrize("height", [1, 3, 9])
@pytest.mark.parametrize("radius", [5, 20])
def test_grow_on_a_thin_strip_is_the_big_frames_grow_cut_to_it(height, radius):
    """The shape does not depend on the frame: a 1 px high strip reached ±8 of ±20
    when the diagonal passes cropped what they moved out of the frame."""
    strip = dot(height, 101, height // 2, 50)
    big = torch.zeros(1, height + 100, 101)
    big[:, 50 : 50 + height] = strip
    grown = masks.grow(strip, radius)
    assert torch.equal(grown, masks.grow(big, radius)[:, 50 : 50 + height])
    assert int((grown[0, height // 2] > 0).sum()) == 2 * radius + 1


def test_shrink_undoes_grow_on_a_square():
    m = torch.zeros(1, 64, 64)
    m[:, 20:40, 20:40] = 1
    assert torch.equal(masks.grow(masks.grow(m, 5), -5), m)


def test_shrink_keeps_border_touching_side():
    m = torch.zeros(1, 32, 32)
    m[:, :, :10] = 1  # an outpaint band on the left
    shrunk = masks.grow(m, -3)[0]
    assert shrunk[:, 0].min() == 1  # the frame edge is not eaten
    assert shrunk[:, 6].min() == 1 and shrunk[:, 7].max() == 0


def test_grow_is_batched_and_per_item():
    m = torch.cat([dot(), torch.zeros(1, 101, 101)])
    out = masks.grow(m, 3)
    assert out[0].sum() > 1 and out[1].sum() == 0


def test_square_morphology_matches_max_pooling():
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(37, 53, generator=gen) > 0.3
    for r in (1, 2, 3, 6):
        k = 2 * r + 1
        dilated = F.max_pool2d(mask[None, None].float(), k, stride=1, padding=r)[0, 0] > 0
        padded = F.pad(mask[None, None].float(), (r,) * 4, value=0.0)
        eroded = -F.max_pool2d(-padded, k, stride=1)[0, 0] > 0
        assert torch.equal(masks.dilate_square(mask, r), dilated)
        assert torch.equal(masks.erode_square(mask, r), eroded)


def test_square_erosion_beyond_the_frame():
    band = torch.zeros(20, 30, dtype=torch.bool)
    band[:, :8] = True  # open to the left, top and bottom edges
    inside = masks.erode_square(band, 3)
    assert inside[3:-3, 3:5].all() and not inside[:3].any() and not inside[:, :3].any()
    beyond = masks.erode_square(band, 3, beyond=True)
    assert beyond[:, :5].all() and not beyond[:, 5:].any()


def test_feather_ramps_and_keeps_range(device):
    m = torch.zeros(1, 64, 64)
    m[:, :, 32:] = 1
    f = masks.feather(m.to(device), 9)[0].cpu()
    row = f[32]
    assert 0.3 < row[31] < 0.5 < row[32] < 0.7
    assert row[0] == 0 and row[-1] == pytest.approx(1)
    assert torch.all(row[1:] >= row[:-1])  # monotone ramp
    assert f.min() >= 0 and f.max() <= 1


@pytest.mark.parametrize(("size", "pixels"), [(1024, 120), (333, 60), (2000, 300)])
def test_wide_feather_is_centred_on_the_edge(size, pixels):
    """Wide feathers blur at a smaller scale: a partial last cell stretched over the frame
    moved the edge (3 px at 1024/120, 11 at 2000/300) and a mirrored mask got another."""
    from scipy.ndimage import gaussian_filter1d

    m = torch.zeros(1, size, size)
    m[:, :, size // 2 :] = 1
    f = masks.feather(m, pixels)[0, size // 2]
    flipped = masks.feather(m.flip(-1), pixels).flip(-1)[0, size // 2]
    want = gaussian_filter1d(m[0, 0].double().numpy(), pixels / 3, mode="reflect", truncate=3)
    assert int((f < 0.5).sum()) == int((want < 0.5).sum())
    assert (f - flipped).abs().max() < 1e-5
    assert (f.double() - torch.from_numpy(want)).abs().max() < 0.005


@pytest.mark.parametrize("pixels", [24, 60, 120, 512])
@pytest.mark.parametrize("case", ["border strip", "corner of an odd frame"])
def test_a_wide_feather_is_reflected_at_the_frame_edge_as_a_narrow_one(case, pixels):
    """The small-scale blur mirrored about its first cell's centre, not the edge pixel:
    an 8 px strip on the border got 0.100 for 0.149 at feather 120 (0.071 off at most
    in these cases); now within 0.01 of the full-size blur everywhere."""
    from scipy.ndimage import gaussian_filter1d

    if case == "border strip":
        m = torch.zeros(1, 256, 256)
        m[:, :, :8] = 1
    else:
        m = torch.zeros(1, 250, 371)
        m[:, :30, 200:] = 1
    want = m[0].double().numpy()
    for axis in (1, 0):
        want = gaussian_filter1d(want, pixels / 3, axis=axis, mode="mirror", truncate=3.0)
    got = masks.feather(m, pixels)[0].double().numpy()
    assert abs(got - want.clip(0, 1)).max() < 0.01


def test_fill_holes_fills_enclosed_only(device):
    m = torch.zeros(1, 20, 20)
    m[:, 5:15, 5:15] = 1
    m[:, 8:12, 8:12] = 0  # enclosed hole
    m[:, 0:3, 0:3] = 0
    out = masks.fill_holes(m.to(device)).cpu()
    assert out[0, 8:12, 8:12].min() == 1
    assert out[0, 0:3, 0:3].max() == 0
    soft = torch.zeros(1, 20, 20)
    soft[:, 5:15, 5:15] = 0.7  # a soft mask with no hole: its values stay (all went to 1)
    assert torch.equal(masks.fill_holes(soft.to(device)).cpu(), soft)
    soft[:, 8:12, 8:12] = 0  # with one: only the hole is filled
    out = masks.fill_holes(soft.to(device)).cpu()
    assert out[0, 8:12, 8:12].min() == 1 and out[0, 5, 5] == pytest.approx(0.7)


def test_remove_specks_drops_small_islands():
    m = torch.zeros(1, 30, 30)
    m[:, 2:4, 2:4] = 1  # 4 px speck
    m[:, 10:20, 10:20] = 1  # 100 px blob
    out = masks.remove_specks(m, 10)
    assert out[0, 2:4, 2:4].max() == 0 and out[0, 10:20, 10:20].min() == 1
    assert masks.remove_specks(m, 4)[0, 2:4, 2:4].min() == 1  # "smaller than": 4 px stays
    assert masks.remove_specks(m, 5)[0, 2:4, 2:4].max() == 0
    tail = masks.remove_specks(m + 1e-4, 10)  # a sigmoid's tail joined them into one island
    assert tail[0, 2:4, 2:4].max() < 1e-3 and tail[0, 10:20, 10:20].min() > 0.99


def test_remove_specks_keeps_the_soft_edge_of_a_kept_island(device):
    m = torch.zeros(1, 60, 60)
    m[:, 10:50, 10:50] = 0.4  # soft halo
    m[:, 20:40, 20:40] = 1.0  # core
    m[:, 2, 2] = 0.4  # faint speck
    out = masks.remove_specks(m.to(device), 4).cpu()
    assert torch.equal(out[:, 5:], m[:, 5:])
    assert out[0, 2, 2] == 0


def test_threshold_binarises():
    assert masks.threshold(torch.tensor([[[0.2, 0.5, 0.9]]]), 0.5).tolist() == [[[0.0, 1.0, 1.0]]]


def test_refine_order_threshold_before_grow():
    m = torch.zeros(1, 40, 40)
    m[:, 20, 20] = 0.3
    assert masks.refine_mask(m, threshold_level=0.5, grow_px=5).sum() == 0
    assert masks.refine_mask(m, grow_px=5).max() == pytest.approx(0.3)


def test_refine_rejects_bad_values():
    with pytest.raises(UncropError, match="threshold"):
        masks.refine_mask(torch.zeros(1, 4, 4), threshold_level=2)
    with pytest.raises(UncropError, match="threshold"):  # passed as "off"
        masks.refine_mask(torch.zeros(1, 4, 4), threshold_level=float("nan"))
    with pytest.raises(UncropError, match="feather"):
        masks.refine_mask(torch.zeros(1, 4, 4), feather_px=-1)
    with pytest.raises(UncropError, match="feather: expected 0 to 512 px"):
        masks.refine_mask(torch.zeros(1, 4, 4), feather_px=1e9)
    with pytest.raises(UncropError, match="grow: expected -1024 to 1024 px"):
        masks.refine_mask(torch.zeros(1, 4, 4), grow_px=-5000)


def test_refine_mask_reports_each_image_and_can_be_cancelled():
    m = torch.zeros(3, 16, 16)
    m[:, 6:9, 6:9] = 1
    hook = ProgressRecorder()
    out = masks.refine_mask(m, grow_px=2, feather_px=1, progress=hook)
    assert hook.updates == [(1, 3), (2, 3), (3, 3)] and hook.checks == 6
    assert torch.equal(out, masks.feather(masks.grow(m, 2), 1))  # as one batched call
    hook = ProgressRecorder(stop=4)  # before the second image's grow
    with pytest.raises(KeyboardInterrupt):
        masks.refine_mask(m, grow_px=2, feather_px=1, progress=hook)
    assert hook.updates == [(1, 3)]


@pytest.mark.parametrize("shape, pixels", [((20, 200), 19.5), ((7, 9), 23.0), ((1, 30), 12.0)])
def test_a_feather_wider_than_the_frame_is_still_reflected(shape, pixels):
    """Past the frame's size the border repeated its last pixel instead: a 20 px strip's
    feather 19.5 was off by 0.23 from the one at 19."""
    from scipy.ndimage import gaussian_filter1d

    mask = (torch.rand(1, *shape, generator=torch.Generator().manual_seed(3)) > 0.6).float()
    want = mask[0].double().numpy()
    for axis in (1, 0):
        want = gaussian_filter1d(want, pixels / 3, axis=axis, mode="mirror", truncate=3.0)
    got = masks.feather(mask, pixels)[0].double().numpy()
    assert abs(got - want.clip(0, 1)).max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_feathered_mask_is_exactly_1_inside_in_any_dtype(dtype):
    """The float32 kernel's weights sum to under 1 (the inside came out 0.9999998), and in
    half precision the inside sagged by an 8-bit level."""
    mask = torch.zeros(1, 700, 700, dtype=dtype)
    mask[:, 150:550, 150:550] = 1
    for pixels in (6.0, 23.5, 100.0):
        out = masks.feather(mask, pixels)
        assert out.dtype == dtype and bool((out[:, 340:360, 340:360] == 1).all()), pixels
        assert bool((out[:, :3, :3] == 0).all())


def test_refine_takes_a_batch_on_the_cpu_to_the_device_one_mask_at_a_time(device):
    m = torch.zeros(3, 64, 80)
    m[0, 10:30, 10:40] = 1
    m[1, 5:60, 50:55] = 1
    m[2, 20:22, 20:70] = 0.6
    options = {"grow_px": 3, "feather_px": 4.0, "fill_holes_": True, "min_speck_area": 6}
    out = masks.refine_mask(m, device=device, **options)
    assert out.device == m.device and out.shape == m.shape
    assert torch.equal(out, masks.refine_mask(m.to(device), **options).cpu())
    assert torch.equal(out[1:2], masks.refine_mask(m[1:2], **options))


def test_refine_mask_takes_integer_masks_and_empty_batches():
    """Found by a fuzz: a bool or uint8 mask came back feathered to 0/1 (the blur was cast
    back to the mask's type), a bool one could not shrink, and an empty batch raised."""
    square = torch.zeros(1, 32, 32)
    square[:, 8:24, 8:24] = 1
    soft = masks.refine_mask(square, feather_px=6)
    for kind in (torch.bool, torch.uint8):
        out = masks.refine_mask(square.to(kind), feather_px=6)
        assert out.is_floating_point() and torch.equal(out, soft)
        assert torch.equal(
            masks.refine_mask(square.to(kind), grow_px=-2), masks.refine_mask(square, grow_px=-2)
        )
    empty = masks.refine_mask(torch.zeros(0, 4, 4), grow_px=2, feather_px=1)
    assert empty.shape == (0, 4, 4)
