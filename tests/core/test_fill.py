"""Model-free fill methods: correctness on real photos and synthetic cases (not speed)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import FillRecorder, ProgressRecorder

from uncrop.core.errors import UncropError
from uncrop.core.fill import FILL_METHODS, fill, nearest_known, parse_color
from uncrop.core.inputs import hole_of, match_mask
from uncrop.core.masks import refine_mask
from uncrop.core.model_free import inpaint

ALL = list(FILL_METHODS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crop(photo: torch.Tensor, size: int = 96) -> torch.Tensor:
    """A small corner of a real photo, so every method runs fast."""
    return photo[:, 200 : 200 + size, 200 : 200 + size].contiguous()


def _rect_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int, batch: int = 1) -> torch.Tensor:
    m = torch.zeros(batch, h, w)
    m[:, y0:y1, x0:x1] = 1
    return m


def _tiling(tile_h: int, tile_w: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    tile = torch.rand(tile_h, tile_w, 3, generator=gen)
    reps = (h // tile_h + 1, w // tile_w + 1, 1)
    return tile.repeat(*reps)[:h, :w].unsqueeze(0)


def _assert_known_kept(out: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> None:
    """Pixels outside the mask exactly as they were; every value finite and in 0..1."""
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], image[0][keep])
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_methods_table_has_the_issue_methods() -> None:
    assert {"smooth", "patch", "pattern", "mirror", "edge"} <= set(FILL_METHODS)


@pytest.mark.parametrize(
    "canvas, box",
    [
        ((30, 100), (0, 40, 30, 20)),  # side bands twice the image's width
        ((40, 100), (10, 45, 20, 10)),  # five reflections each way, and the corners
        ((48, 60), (14, 20, 20, 12)),
        ((150, 150), (70, 73, 4, 4)),  # 18 reflections each way: more than MIRROR_BOUNCES
        ((20, 100), (0, 80, 20, 20)),  # reflections that would cross the frame's edge
    ],
)
@pytest.mark.parametrize("method, mode", [("mirror", "reflect"), ("edge", "edge")])
def test_mirror_and_edge_are_padding_however_wide_the_band(
    canvas: tuple[int, int],
    box: tuple[int, int, int, int],
    method: str,
    mode: str,
    device: torch.device,
) -> None:
    # A band wider than the image used to take the edge colour past the first
    # reflection (streaks); each pixel now bounces on as numpy's reflect padding does.
    (hh, ww), (top, left, h, w) = canvas, box
    src = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(1))
    image = torch.zeros(1, hh, ww, 3)
    image[0, top : top + h, left : left + w] = src
    mask = torch.ones(1, hh, ww)
    mask[0, top : top + h, left : left + w] = 0
    out = fill(image.to(device), mask.to(device), method)
    pads = ((top, hh - top - h), (left, ww - left - w), (0, 0))
    assert np.array_equal(out[0].cpu().numpy(), np.pad(src.numpy(), pads, mode=mode))


def test_edge_on_a_known_rectangle_matches_the_nearest_known_pixel() -> None:
    # The rectangle shortcut (clamped coordinates) must give what the distance
    # transform gives: the nearest point of a rectangle is unique, so no tie differs.
    image = torch.rand(1, 40, 50, 3, generator=torch.Generator().manual_seed(2))
    mask = _rect_mask(40, 50, 0, 40, 0, 50)
    mask[0, 9:30, 12:21] = 0
    near = nearest_known(mask > 0)[0]
    expected = torch.where(mask[0, ..., None] > 0, image[0][near[..., 0], near[..., 1]], image[0])
    assert torch.equal(fill(image, mask, "edge")[0], expected)


@pytest.mark.parametrize("method", ALL)
def test_known_pixels_untouched_and_hole_changed(
    method: str, astronaut: torch.Tensor, device: torch.device
) -> None:
    image = _crop(astronaut).to(device)
    mask = _rect_mask(96, 96, 30, 60, 20, 70).to(device)
    out = fill(image, mask, method, seed=3)
    assert out.shape == image.shape and out.device == image.device
    _assert_known_kept(out, image, mask)
    if method not in ("color",):
        # A fill from the surroundings is closer to the truth than a flat grey.
        hole = mask[0] > 0
        err = (out[0][hole] - image[0][hole]).abs().mean()
        grey = (0.5 - image[0][hole]).abs().mean()
        assert err < grey


@pytest.mark.parametrize("method", ALL)
def test_result_is_a_new_tensor(method: str, astronaut: torch.Tensor, coffee: torch.Tensor) -> None:
    # One image with a hole, one without (which every method must pass through as it
    # is): writing to the result must not reach the input.
    images = torch.cat([_crop(astronaut, 48), _crop(coffee, 48)])
    before = images.clone()
    mask = torch.stack([_rect_mask(48, 48, 10, 30, 10, 30)[0], torch.zeros(48, 48)])
    for batch in (slice(0, 1), slice(0, 2), slice(1, 2)):
        out = fill(images[batch], mask[batch], method, seed=1)
        keep = mask[batch][0] == 0
        assert torch.equal(out[0][keep], before[batch][0][keep])
        out.fill_(0.25)
        assert torch.equal(images, before)
    assert torch.equal(fill(images, mask, method)[1], before[1])


def test_each_image_is_filled_alone_on_the_device_asked(monkeypatch) -> None:
    # A batch of frames given on the CPU is never moved to the GPU whole: fill moves one
    # image (and its hole and source mask) to ``device`` at a time, and its result back.
    # ("meta" stands in for a GPU: a device tensors can be moved to but not read on.)
    method = FillRecorder()
    monkeypatch.setitem(FILL_METHODS, "patch", method)
    images = torch.rand(3, 16, 16, 3)
    mask = _rect_mask(16, 16, 4, 12, 4, 12)
    out = fill(images, mask, "patch", source_mask=torch.ones(1, 16, 16), device="meta")
    meta = torch.device("meta")
    assert [(d, n, hd, s.device, s.shape[0]) for d, n, hd, s in method.calls] == [
        (meta, 1, meta, meta, 1)
    ] * 3
    assert out.device == images.device and out.shape == images.shape
    assert bool((out[:, 4:12, 4:12] == 0).all())  # the method's results, brought back


@pytest.mark.parametrize("method", ["smooth", "patch", "pattern"])
def test_cancel_is_honoured_inside_one_image(method: str, astronaut: torch.Tensor) -> None:
    # A long fill of one image asks between its solver or search steps, not only
    # between the images of a batch (an expand with patch ignored Cancel for 49 s).
    image = _crop(astronaut, 192)
    mask = _rect_mask(192, 192, 40, 150, 40, 150)
    asked = ProgressRecorder()
    fill(image, mask, method, progress=asked)
    assert asked.checks > 5
    with pytest.raises(KeyboardInterrupt):
        fill(image, mask, method, progress=ProgressRecorder(stop=4))


def test_patch_progress_moves_through_the_pyramid_and_the_batch(astronaut: torch.Tensor) -> None:
    images = torch.cat([_crop(astronaut, 160), _crop(astronaut, 160).flip(2)])
    hook = ProgressRecorder()
    fill(images, _rect_mask(160, 160, 20, 140, 30, 130), "patch", progress=hook)
    done = [d / t for d, t in hook.updates]
    assert len(done) > 4  # levels of each image, not only whole images
    assert done == sorted(done) and done[-1] == 1.0
    assert any(0 < d < 0.5 for d in done)  # the first image's levels come first


@pytest.mark.parametrize("method", ["patch", "pattern", "noise"])
def test_deterministic_per_seed(method: str, coffee: torch.Tensor, device: torch.device) -> None:
    image = _crop(coffee).to(device)
    mask = _rect_mask(96, 96, 20, 70, 30, 60).to(device)
    a = fill(image, mask, method, seed=7)
    b = fill(image, mask, method, seed=7)
    assert torch.equal(a, b)
    if method != "pattern":
        c = fill(image, mask, method, seed=8)
        assert not torch.equal(a, c)


def test_smooth_reproduces_a_linear_ramp(device: torch.device) -> None:
    h, w = 80, 96
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ramp = torch.stack([0.1 + 0.006 * yy + 0.003 * xx, 0.9 - 0.004 * xx, 0.3 + 0.002 * yy], -1)
    image = ramp.float().unsqueeze(0).to(device)
    mask = _rect_mask(h, w, 15, 65, 10, 80).to(device)
    out = fill(image, mask, "smooth")
    assert (out - image).abs().max() < 1e-5


def test_smooth_beats_flat_fill_on_scratches(astronaut: torch.Tensor) -> None:
    image = _crop(astronaut, 128)
    mask = torch.zeros(1, 128, 128)
    mask[:, 40:42, :] = 1
    mask[:, :, 90:93] = 1
    out = fill(image, mask, "smooth")
    hole = mask[0] > 0
    err = (out[0][hole] - image[0][hole]).abs().mean()
    assert err < 0.05


def test_patch_copies_only_from_allowed_sources(brick: torch.Tensor, device: torch.device) -> None:
    image = _crop(brick, 128).to(device, copy=True)
    magenta = torch.tensor([1.0, 0.0, 1.0], device=device)
    image[0, :, :40] = magenta  # a unique colour in the excluded area
    mask = _rect_mask(128, 128, 40, 90, 40, 90).to(device)  # touching the magenta area
    source = torch.ones(1, 128, 128, device=device)
    source[:, :, :44] = 0
    out = fill(image, mask, "patch", source_mask=source, seed=1)
    filled = out[0][mask[0] > 0]
    distance = (filled - magenta).abs().sum(dim=-1)
    assert distance.min() > 0.3
    # Without the source mask the magenta area is fair game (the check above can fail).
    free = fill(image, mask, "patch", seed=1)
    assert ((free[0][mask[0] > 0] - magenta).abs().sum(dim=-1) < 0.3).any()


def test_patch_reproduces_texture_in_a_hole(brick: torch.Tensor) -> None:
    image = _crop(brick, 128)
    mask = _rect_mask(128, 128, 44, 84, 44, 84)
    out = fill(image, mask, "patch", seed=0)
    smooth = fill(image, mask, "smooth")
    hole = mask[0] > 0

    def detail(x: torch.Tensor) -> float:
        g = x[0].mean(-1)
        lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        return float(lap[hole[1:-1, 1:-1]].abs().mean())

    assert detail(out) > 0.5 * detail(image)
    assert detail(out) > 3 * detail(smooth)


def test_patch_rejects_bad_options(astronaut: torch.Tensor) -> None:
    image = _crop(astronaut, 64)
    mask = _rect_mask(64, 64, 20, 40, 20, 40)
    with pytest.raises(UncropError, match="patch_size"):
        fill(image, mask, "patch", patch_size=4)
    with pytest.raises(UncropError, match="source_mask: leaves no known pixels"):
        fill(image, mask, "patch", source_mask=torch.zeros(1, 64, 64))


def test_pattern_outpaints_a_tiling_exactly(
    caplog: pytest.LogCaptureFixture, device: torch.device
) -> None:
    image = _tiling(11, 17, 120, 200, seed=2).to(device)
    mask = _rect_mask(120, 200, 0, 120, 0, 40) + _rect_mask(120, 200, 0, 120, 160, 200)
    mask = mask.to(device)
    with caplog.at_level(logging.INFO, logger="uncrop.core.fill"):
        out = fill(image, mask, "pattern")
    assert (out - image).abs().max() < 1e-6
    assert "period" in caplog.text


def test_pattern_falls_back_to_patch_without_a_period(
    coffee: torch.Tensor, caplog: pytest.LogCaptureFixture
) -> None:
    image = _crop(coffee)
    mask = _rect_mask(96, 96, 0, 96, 70, 96)
    with caplog.at_level(logging.INFO, logger="uncrop.core.fill"):
        out = fill(image, mask, "pattern", seed=4)
    assert "using patch" in caplog.text
    assert torch.equal(out, fill(image, mask, "patch", seed=4))


def test_pattern_leftovers_beside_a_thin_known_strip(caplog: pytest.LogCaptureFixture) -> None:
    """Two known columns of stripes: a period down them, none across, so the lattice
    leaves the hole to patch, which copies from anything known (no source_mask was
    given, so none is checked or blamed)."""
    image = torch.zeros(1, 40, 40, 3)
    image[:, ::4] = 1.0
    mask = torch.ones(1, 40, 40)
    mask[:, :, :2] = 0
    with caplog.at_level(logging.INFO, logger="uncrop.core.fill"):
        out = fill(image, mask, "pattern", seed=0)
    assert "patch-filling them" in caplog.text
    assert torch.equal(out[..., :2, :], image[..., :2, :])
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("method", ALL)
def test_batches_and_mask_shapes(
    method: str, astronaut: torch.Tensor, coffee: torch.Tensor, device: torch.device
) -> None:
    images = torch.cat([_crop(astronaut, 64), _crop(coffee, 64)]).to(device)
    mask2d = _rect_mask(64, 64, 10, 30, 40, 60)[0].to(device)
    out = fill(images, mask2d, method)
    # Each image of a batch is filled as it is alone (image i takes seed + i).
    for i in range(2):
        assert torch.equal(out[i : i + 1], fill(images[i : i + 1], mask2d, method, seed=i))
    # One mask per image, in [B,1,H,W] form, and a single image over a batch of masks.
    masks = torch.stack([mask2d, mask2d.flip(0)])
    out2 = fill(images, masks.unsqueeze(1), method)
    assert torch.equal(out2[1][masks[1] == 0], images[1][masks[1] == 0])
    assert torch.equal(out2[1:], fill(images[1:], masks[1], method, seed=1))
    out3 = fill(images[:1], masks, method)
    assert out3.shape == (2, 64, 64, 3)
    assert torch.equal(out3[1:], fill(images[:1], masks[1], method, seed=1))
    # Half-size mask with the same aspect ratio is resized: the hole at full size, its
    # edge within a pixel.
    _, up = match_mask(images, mask2d[::2, ::2])
    hole = hole_of(up)
    assert bool(hole[:, mask2d > 0].all())
    assert not bool(hole[:, _rect_mask(64, 64, 9, 31, 39, 61)[0] == 0].any())
    assert torch.equal(fill(images, mask2d[::2, ::2], method), fill(images, up, method))


@pytest.mark.parametrize("method", ALL)
def test_tiny_frames_and_almost_nothing_known(method: str, device: torch.device) -> None:
    # Few source patches make a rank-deficient patch covariance (patch's float32 eigh
    # failed to converge on some of these).
    gen = torch.Generator().manual_seed(0)
    cases = []
    for seed in range(60):
        image = torch.rand(1, 2, 2, 3, generator=gen)
        cases.append((image, _rect_mask(2, 2, seed % 2, seed % 2 + 1, 1, 2)))
    column = torch.ones(1, 40, 40)
    column[:, :, 20:22] = 0
    cases += [
        (torch.rand(1, 40, 40, 3, generator=gen), column),
        (torch.rand(1, 1, 9, 3, generator=gen), _rect_mask(1, 9, 0, 1, 3, 6)),
    ]
    for image, mask in cases:
        image, mask = image.to(device), mask.to(device)
        out = fill(image, mask, method, seed=1)
        _assert_known_kept(out, image, mask)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ALL)
def test_half_precision_images(
    method: str, dtype: torch.dtype, astronaut: torch.Tensor, device: torch.device
) -> None:
    image = _crop(astronaut, 48).to(device, dtype)
    mask = _rect_mask(48, 48, 10, 30, 10, 30).to(device)
    mask[0, 40:, :] = 0.00392  # under 1/255, a known pixel; float16 rounds it to 1/255
    out = fill(image, mask, method, seed=2)
    assert out.dtype == dtype
    _assert_known_kept(out, image, mask)
    assert torch.equal(out[0, 40:], image[0, 40:])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ALL)
def test_half_precision_fills_a_big_hole_as_float32_does(
    method: str, dtype: torch.dtype, astronaut: torch.Tensor
) -> None:
    # A 60 px hole reaches smooth's grid solver (the 20 px one above is solved directly),
    # which gave NaN computed in float16. Each fill of the half-precision image is its
    # float32 fill, rounded to the dtype.
    image = _crop(astronaut, 96).to(dtype)
    mask = _rect_mask(96, 96, 18, 78, 18, 78)
    out = fill(image, mask, method, seed=2)
    _assert_known_kept(out, image, mask)
    full = fill(image.float(), mask, method, seed=2)
    assert (out.float() - full).abs().max() <= 2 * torch.finfo(dtype).eps


def test_noise_statistics_do_not_overflow_half_precision(astronaut: torch.Tensor) -> None:
    # 300 x 300 known pixels: more than float16 can count (65504).
    image = _crop(astronaut, 320)
    mask = _rect_mask(320, 320, 100, 140, 100, 140)
    half = fill(image.half(), mask, "noise", seed=0)[0, 100:140, 100:140].float()
    full = fill(image, mask, "noise", seed=0)[0, 100:140, 100:140]
    assert torch.isfinite(half).all()
    assert (half - full).abs().max() < 0.01  # the same noise, at half precision
    double = fill(image.double(), mask, "noise", seed=0)[0, 100:140, 100:140].float()
    assert (double - full).abs().max() < 1e-5  # float64 drew other noise for the seed


def test_noise_on_a_grey_photo_is_grey(astronaut: torch.Tensor) -> None:
    image = _crop(astronaut, 64).mean(dim=-1, keepdim=True).expand(1, 64, 64, 3).contiguous()
    mask = _rect_mask(64, 64, 20, 40, 20, 40)
    out = fill(image, mask, "noise", seed=0)[0, 20:40, 20:40]
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])
    assert out.std() > 0.05  # noise, not a flat grey
    image[0, 25:35, 25:35] = torch.tensor([1.0, 0.0, 0.0])  # a red object, to be removed
    out = fill(image, mask, "noise", seed=0)[0, 20:40, 20:40]
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])
    colour = fill(_crop(astronaut, 64), mask, "noise", seed=0)[0, 20:40, 20:40]
    assert not torch.equal(colour[..., 0], colour[..., 1])  # a colour photo's stays colour


@pytest.mark.parametrize("method", ALL)
def test_empty_full_and_border_masks(method: str, coffee: torch.Tensor) -> None:
    image = _crop(coffee, 64)
    assert torch.equal(fill(image, torch.zeros(1, 64, 64), method), image)
    full = fill(image, torch.ones(1, 64, 64), method)
    if method != "color":  # nothing known to fill from: neutral grey, with a warning
        assert torch.equal(full, torch.full_like(image, 0.5))
    border = _rect_mask(64, 64, 0, 64, 0, 12)  # a band touching three frame edges
    corner = _rect_mask(64, 64, 50, 64, 50, 64)
    for mask in (border, corner):
        out = fill(image, mask, method, seed=1)
        _assert_known_kept(out, image, mask)


@pytest.mark.parametrize("method", ["smooth", "patch", "edge"])
def test_a_mask_nowhere_exactly_0_still_has_known_pixels(method: str, coffee: torch.Tensor) -> None:
    """A segmentation model's sigmoid (1e-6 in the background) or a wide feather: values
    under one 8-bit step are known pixels, not hole. Counted as hole they left nothing
    known, and the fill was flat grey."""
    image = _crop(coffee, 64)
    hard = _rect_mask(64, 64, 20, 40, 20, 40)
    tail = hard.clamp_min(1e-6)
    out = fill(image, tail, method, seed=3)
    assert torch.equal(out, fill(image, hard, method, seed=3))
    feathered = inpaint(image, refine_mask(hard, feather_px=200), method, seed=3)
    assert (feathered[0, 30, 30] - 0.5).abs().max() > 0.05  # not the grey of a full mask


def test_rgba_and_grey_channels(astronaut: torch.Tensor) -> None:
    rgb = _crop(astronaut, 48)
    mask = _rect_mask(48, 48, 10, 30, 10, 30)
    for image in (torch.cat([rgb, torch.ones_like(rgb[..., :1])], -1), rgb[..., :1]):
        for method in ("smooth", "patch", "pattern"):
            out = fill(image, mask, method)
            assert out.shape == image.shape
            _assert_known_kept(out, image, mask)
            if image.shape[-1] == 4:  # opaque around the hole: opaque in it
                assert float(out[..., 3].min()) == 1.0


@pytest.mark.parametrize("method", ["smooth", "patch", "pattern"])
def test_rgba_known_pixels_are_kept_at_any_alpha(method: str, astronaut: torch.Tensor) -> None:
    # These fill with colours weighted by alpha and divide it out after, which is not
    # exact at every alpha and loses the colour under alpha 0: the known pixels are the
    # input's, not the round trip's.
    rgb = _crop(astronaut, 64)
    alpha = torch.rand(1, 64, 64, 1, generator=torch.Generator().manual_seed(3))
    alpha[:, ::5] = 0  # transparent rows that still hide a colour
    image = torch.cat([rgb, alpha], -1)
    mask = _rect_mask(64, 64, 20, 44, 20, 44)
    _assert_known_kept(fill(image, mask, method, seed=1), image, mask)


def test_color_fills_even_a_whole_frame_and_greys_to_luminance() -> None:
    image = torch.rand(2, 16, 16, 1, generator=torch.Generator().manual_seed(0))
    mask = _rect_mask(16, 16, 4, 8, 4, 8, batch=2)
    mask[0] = 1  # nothing known: a colour still needs nothing
    out = fill(image, mask, "color", color=(0.0, 0.0, 1.0))
    assert torch.allclose(out[mask > 0], torch.tensor(0.0722))  # blue's luminance
    rgba = torch.rand(1, 16, 16, 4)
    out = fill(rgba, torch.ones(1, 16, 16), "color", color=(1.0, 0.0, 0.0))
    assert out[0, 3, 3].tolist() == [1.0, 0.0, 0.0, 1.0]


def test_seeds_are_checked_and_wrap_per_image(coffee: torch.Tensor) -> None:
    image = _crop(coffee, 32)
    mask = _rect_mask(32, 32, 8, 24, 8, 24, batch=2)
    for seed in (-1, 2**64, 1.5):
        with pytest.raises(UncropError, match="seed: expected a whole number"):
            fill(image, mask, "noise", seed=seed)
    top = fill(image, mask, "noise", seed=2**64 - 1)  # the second image's seed is 2**64: 0
    assert torch.equal(top[1], fill(image, mask, "noise", seed=0)[0])


def test_source_masks_must_match_the_batch(coffee: torch.Tensor) -> None:
    image = _crop(coffee, 32)
    with pytest.raises(UncropError, match="source_mask: a batch of 3 for 1 image"):
        fill(image, _rect_mask(32, 32, 8, 24, 8, 24), "patch", source_mask=torch.ones(3, 32, 32))


def test_unknown_method_names_the_choices(astronaut: torch.Tensor) -> None:
    with pytest.raises(UncropError, match="smooth"):
        fill(_crop(astronaut, 32), torch.ones(1, 32, 32), "telea")


def test_nearest_known_is_exact_and_jump_flooding_agrees(astronaut: torch.Tensor) -> None:
    # The CPU takes SciPy's exact transform, a GPU jump flooding: the same distances.
    from scipy.ndimage import distance_transform_edt

    from uncrop.core.fill import _jump_flood

    gen = torch.Generator().manual_seed(0)
    hole = torch.rand(2, 70, 90, generator=gen) < 0.97  # scattered known pixels
    hole[1] = astronaut[0, :70, :90, 0] > 0.3  # a photo's shapes
    hole[1, :, 30:60] = True
    for name, near in (("exact", nearest_known(hole)), ("jump flood", _jump_flood(hole))):
        assert near.shape == (2, 70, 90, 2) and near.dtype == torch.long
        ny, nx = near[..., 0], near[..., 1]
        assert not hole[torch.arange(2).view(2, 1, 1), ny, nx].any(), name
        yy, xx = torch.meshgrid(torch.arange(70), torch.arange(90), indexing="ij")
        dist = ((ny - yy) ** 2 + (nx - xx) ** 2).float().sqrt()
        for i in range(2):
            truth = torch.from_numpy(distance_transform_edt(hole[i].numpy())).float()
            assert torch.allclose(dist[i], truth, atol=1e-4), name
    # A layout where one pass at distance 1 after the halving ones took (0, 27) for
    # (7, 37), 149 px² away, over (6, 25) at 145: the pass at distance 2 finds it.
    sparse = torch.ones(1, 8, 64, dtype=torch.bool)
    for y, x in ((0, 27), (0, 56), (1, 1), (6, 25), (7, 4)):
        sparse[0, y, x] = False
    assert _jump_flood(sparse)[0, 7, 37].tolist() == [6, 25]
    nowhere = torch.ones(1, 4, 6, dtype=torch.bool)  # no known pixel: each keeps its own place
    for near in (nearest_known(nowhere), _jump_flood(nowhere)):
        assert torch.equal(near[0, ..., 0], torch.arange(4).view(4, 1).expand(4, 6))
        assert torch.equal(near[0, ..., 1], torch.arange(6).view(1, 6).expand(4, 6))


def test_nearest_known_and_parse_color() -> None:
    hole = torch.ones(1, 5, 5, dtype=torch.bool)
    hole[0, 2, 2] = False
    near = nearest_known(hole)
    assert (near[0, ..., 0] == 2).all() and (near[0, ..., 1] == 2).all()
    assert parse_color("#f00") == (1.0, 0.0, 0.0)
    assert parse_color("ff000080") == (1.0, 0.0, 0.0, 128 / 255)
    assert parse_color("#f008") == (1.0, 0.0, 0.0, 136 / 255)
    for bad in ("nope", "#-1-1-1", "#+f+f+f", "# ff ff", "#0x1234", "#12345", "#1234567"):
        with pytest.raises(UncropError, match="color"):
            parse_color(bad)


def test_a_colour_with_alpha_fills_an_rgba_hole_with_it() -> None:
    """#ff000080 on an RGBA image: red at half alpha (the alpha was dropped); on an RGB
    image an alpha under 1 is refused, naming the colour, and 1 is taken as opaque."""
    rgba = torch.rand(1, 8, 8, 4, generator=torch.Generator().manual_seed(0))
    mask = _rect_mask(8, 8, 2, 6, 2, 6)
    out = fill(rgba, mask, "color", color="#ff000080")
    hole = mask[0] > 0
    assert torch.equal(out[0][hole], torch.tensor([1.0, 0.0, 0.0, 128 / 255]).expand(16, 4))
    assert torch.equal(out[0][~hole], rgba[0][~hole])
    with pytest.raises(UncropError, match="color: alpha 0.5 needs an RGBA image; this one has 3"):
        fill(rgba[..., :3], mask, "color", color=(1.0, 0.0, 0.0, 0.5))
    opaque = fill(rgba[..., :3], mask, "color", color=(1.0, 0.0, 0.0, 1.0))
    assert torch.equal(opaque[0][hole], torch.tensor([1.0, 0.0, 0.0]).expand(16, 3))


def test_smooth_solves_separate_holes_on_their_own_boxes(coffee: torch.Tensor) -> None:
    from uncrop.core.smooth import _boxes

    image = _crop(coffee, 128)
    left = _rect_mask(128, 128, 0, 128, 0, 20)  # an outpaint-like band on each side
    right = _rect_mask(128, 128, 30, 60, 100, 128)
    boxes = _boxes((left + right)[0] > 0, 2)
    assert len(boxes) == 2
    assert sum((ys.stop - ys.start) * (xs.stop - xs.start) for ys, xs in boxes) < 128 * 60
    both = fill(image, left + right, "smooth", tension=0.01)
    # Each band alone gives the same pixels: the boxes do not interact.
    one = fill(image, left, "smooth", tension=0.01)
    two = fill(image, right, "smooth", tension=0.01)
    assert torch.allclose(both[0][left[0] > 0], one[0][left[0] > 0], atol=1e-6)
    assert torch.allclose(both[0][right[0] > 0], two[0][right[0] > 0], atol=1e-6)


def test_bad_options_are_named_and_a_hex_colour_is_taken() -> None:
    image, mask = torch.rand(1, 16, 16, 3), _rect_mask(16, 16, 4, 8, 4, 8)
    for method, options, name in (
        ("patch", {"patch_size": 7.5}, "patch_size"),  # was cut to 7
        ("patch", {"patch_size": None}, "patch_size"),  # was a TypeError
        ("smooth", {"tension": float("nan")}, "tension"),  # was SciPy's "exactly singular"
        ("smooth", {"tension": -1.0}, "tension"),
        ("smooth", {"tension": True}, "tension"),
        ("color", {"color": (2.0, -1.0, 0.5)}, "color"),  # was written as is
        ("color", {"color": "#zz0000"}, "color"),
    ):
        with pytest.raises(UncropError, match=f"^{name}: expected"):
            fill(image, mask, method, **options)
    red = fill(image, mask, "color", color="#ff0000")[0, 5, 5]
    assert torch.equal(red, torch.tensor([1.0, 0.0, 0.0]))
    # Options a method does not read are not its business.
    edge = fill(image, mask, "edge")
    assert torch.equal(fill(image, mask, "edge", patch_size=None, color=torch.ones(3)), edge)
    # A tensor that carries gradients is filled (as data), not refused by NumPy.
    grad = image.clone().requires_grad_(True)
    assert torch.equal(fill(grad, mask, "smooth"), fill(image, mask, "smooth"))
    with pytest.raises(UncropError, match="mask: expected real values"):
        fill(image, mask.to(torch.complex64), "edge")


@pytest.mark.parametrize("method", ["smooth", "patch", "pattern", "noise", "edge", "mirror"])
def test_rgba_fills_never_show_the_colour_hidden_under_transparency(method):
    """A red disc on a transparent background whose hidden colour is black, the hole across
    its edge: mixed straight, the fill's visible pixels came out as dark as 0.05 red, and
    noise gave the hole random alpha."""
    yy, xx = torch.meshgrid(torch.arange(96), torch.arange(96), indexing="ij")
    disc = (((yy - 48) ** 2 + (xx - 48) ** 2) < 30**2).float()
    image = torch.zeros(1, 96, 96, 4)
    image[0, ..., 0] = image[0, ..., 3] = disc
    mask = torch.zeros(1, 96, 96)
    mask[0, 8:40, 30:66] = 1
    out = fill(image, mask, method, seed=0)[0]
    hole = mask[0] > 0
    seen = hole & (out[..., 3] > 0.05)
    assert int(seen.sum()) > 300
    assert torch.equal(out[..., 0][seen], torch.ones(int(seen.sum())))
    assert torch.equal(out[~hole], image[0][~hole])
    if method in ("noise", "edge", "mirror"):  # whole pixels: alpha 0 or 1, as around it
        assert bool(((out[..., 3][hole] == 0) | (out[..., 3][hole] == 1)).all())
