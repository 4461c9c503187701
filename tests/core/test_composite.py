import pytest
import torch
from conftest import ProgressRecorder

from uncrop.core.composite import _match_values, color_match, composite, lab_to_rgb, rgb_to_lab
from uncrop.core.errors import UncropError
from uncrop.core.masks import dilate, feather


def hole_mask(h, w, soft=0.0):
    m = torch.zeros(1, h, w)
    m[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return feather(m, soft) if soft else m


def test_unmasked_pixels_bit_identical_even_with_soft_mask(astronaut, device):
    astronaut = astronaut.to(device)
    generated = torch.rand_like(astronaut)
    mask = hole_mask(512, 512, soft=12).to(device)
    out = composite(astronaut, generated, mask)
    keep = (mask == 0).unsqueeze(-1).expand_as(out)
    assert torch.equal(out[keep], astronaut[keep])
    inside = (mask == 1).unsqueeze(-1).expand_as(out)
    assert torch.equal(out[inside], generated[inside])
    mid = (mask > 0.2) & (mask < 0.8)
    blend = astronaut[0][mid[0]] * (1 - mask[0][mid[0]].unsqueeze(-1)) + generated[0][
        mid[0]
    ] * mask[0][mid[0]].unsqueeze(-1)
    assert torch.allclose(out[0][mid[0]], blend, atol=1e-6)


def test_composite_exact_even_if_generated_overshoots_outside():
    orig = torch.rand(2, 16, 16, 3)
    gen = torch.full_like(orig, 1.4)  # a resampler's overshoot: clamped, never seen outside
    gen[0, 0, 0] = -0.3
    mask = hole_mask(16, 16)
    out = composite(orig, gen, mask)
    keep = mask[0] == 0
    assert torch.equal(out[:, keep], orig[:, keep])
    assert torch.equal(out[:, ~keep], torch.ones_like(out[:, ~keep]))


@pytest.mark.parametrize("scale", ["0..255", "-1..1"])
def test_composite_refuses_an_image_on_another_scale(scale):
    """Clamped, a 0..255 image would come out white and a -1..1 one dark: refused, by name."""
    orig = torch.rand(1, 16, 16, 3)
    other = orig * 255 if scale == "0..255" else orig * 2 - 1
    with pytest.raises(UncropError, match=r"generated: values run from .* divide a 0\.\.255"):
        composite(orig, other, hole_mask(16, 16))
    with pytest.raises(UncropError, match=r"original: values run from"):
        composite(other, orig, hole_mask(16, 16))


def test_composite_is_exactly_the_generated_image_where_the_mask_is_1():
    """8-bit levels k/255 in float32, and bfloat16: orig + (gen - orig) * 1 rounds."""
    gen_ = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        orig = (torch.randint(0, 256, (1, 32, 32, 3), generator=gen_) / 255).to(dtype)
        gen = (torch.randint(0, 256, (1, 32, 32, 3), generator=gen_) / 255).to(dtype)
        out = composite(orig, gen, torch.ones(1, 32, 32))
        assert torch.equal(out, gen)
    # RGBA blends premultiplied; at 1 the generated pixel is taken as it is, alpha below 1
    # (an ulp off through the round trip) and the colour under alpha 0 (black) included.
    orig, gen = torch.rand(2, 1, 32, 32, 4, generator=gen_)
    gen[..., ::3, 3] = 0
    assert torch.equal(composite(orig, gen, torch.ones(1, 32, 32)), gen)


def test_composite_keeps_the_sign_of_zero_in_kept_pixels():
    """torch.equal calls -0.0 and +0.0 equal; the bits differ, and kept pixels keep their bits."""
    orig = torch.rand(1, 8, 8, 3)
    orig[0, 0] = -0.0
    out = composite(orig, torch.rand_like(orig), hole_mask(8, 8, soft=0))
    assert torch.signbit(out[0, 0]).all()
    assert torch.equal(out.view(torch.int32)[:, 0], orig.view(torch.int32)[:, 0])


def test_composite_refuses_non_finite_generated():
    orig = torch.rand(1, 16, 16, 3)
    with pytest.raises(UncropError, match="generated: contains NaN or infinite"):
        composite(orig, torch.full_like(orig, float("inf")), hole_mask(16, 16))


def test_composite_batches_and_single_generated():
    orig = torch.rand(3, 8, 8, 3)
    out = composite(orig, torch.zeros(1, 8, 8, 3), hole_mask(8, 8))
    assert out.shape == (3, 8, 8, 3)
    assert torch.equal(out[:, 0], orig[:, 0])


def test_single_original_serves_a_generated_batch():
    orig = torch.rand(1, 8, 8, 3)
    gen = torch.rand(4, 8, 8, 3)
    out = composite(orig, gen, hole_mask(8, 8))
    assert out.shape == (4, 8, 8, 3)
    assert torch.equal(out[3, 0], orig[0, 0]) and torch.equal(out[3, 4, 4], gen[3, 4, 4])
    with pytest.raises(
        UncropError, match="generated batch of 4 does not match the original batch of 2"
    ):
        composite(torch.rand(2, 8, 8, 3), gen, hole_mask(8, 8))
    with pytest.raises(
        UncropError, match="generated batch of 4 does not match the mask batch of 3"
    ):
        composite(orig, gen, torch.ones(3, 8, 8))  # one original over 3 masks


def test_grey_original_takes_the_luminance_of_a_colour_generated_image():
    orig = torch.rand(1, 8, 8, 1)
    gen = torch.zeros(1, 8, 8, 3)
    gen[..., 1] = 1.0  # pure green
    out = composite(orig, gen, hole_mask(8, 8))
    assert out.shape == (1, 8, 8, 1)
    assert out[0, 4, 4, 0] == pytest.approx(0.7152)
    assert torch.equal(out[0, 0], orig[0, 0])


@pytest.mark.parametrize(
    ("generated", "message"),
    [
        (torch.rand(1, 4, 4, 3), "generated image is 4x4 but the original is 8x8"),
        (torch.rand(3, 8, 8, 3), "generated batch of 3 does not match the original batch of 2"),
    ],
)
def test_color_match_checks_its_inputs_first(generated, message):
    with pytest.raises(UncropError, match=message):
        color_match(generated, torch.rand(2, 8, 8, 3), hole_mask(8, 8))


def test_color_match_on_a_grey_image():
    ref = torch.full((1, 64, 64, 1), 0.5)
    gen = torch.full((1, 64, 64, 1), 0.9)
    mask = hole_mask(64, 64)
    out = color_match(gen, ref, mask)
    assert out[0, 32, 32, 0] == pytest.approx(0.5, abs=1e-4)
    assert torch.equal(out[0, 0], gen[0, 0])


def test_composite_size_mismatch_is_clear():
    with pytest.raises(UncropError, match="generated image is 4x4 but the original is 8x8"):
        composite(torch.rand(1, 8, 8, 3), torch.rand(1, 4, 4, 3), torch.ones(1, 8, 8))


def test_composite_keeps_alpha_channel():
    orig = torch.rand(1, 8, 8, 4)
    out = composite(orig, torch.rand(1, 8, 8, 3), hole_mask(8, 8))
    assert out.shape[-1] == 4 and torch.equal(out[0, 0], orig[0, 0])


def test_lab_roundtrip():
    x = torch.rand(1000, 3)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-4)
    assert rgb_to_lab(torch.tensor([1.0, 1.0, 1.0]))[0] == pytest.approx(100, abs=0.01)


@pytest.mark.parametrize("mode", ["mean_std", "histogram"])
def test_color_match_removes_cast(astronaut, mode, device):
    astronaut = astronaut.to(device)
    mask = hole_mask(512, 512).to(device)
    # A generated image with the right content but a strong warm cast and low contrast.
    cast = (astronaut * 0.6 + torch.tensor([0.3, 0.1, 0.0], device=device)).clamp(0, 1)
    fixed = color_match(cast, astronaut, mask, mode)
    inside = mask[0] > 0
    before = (cast[0][inside] - astronaut[0][inside]).mean(0).abs().max()
    after = (fixed[0][inside] - astronaut[0][inside]).mean(0).abs().max()
    assert after < before / 3
    assert torch.equal(fixed[0][~inside], cast[0][~inside])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["mean_std", "histogram"])
def test_color_match_in_half_precision(astronaut, mode, dtype):
    # Statistics in float32: half-precision quantile positions ran past the end.
    mask = hole_mask(512, 512)
    cast = (astronaut * 0.6 + torch.tensor([0.3, 0.1, 0.0])).clamp(0, 1)
    fixed = color_match(cast.to(dtype), astronaut.to(dtype), mask, mode)
    assert fixed.dtype == dtype
    full = color_match(cast, astronaut, mask, mode)
    gap = (fixed.float() - full).abs()
    assert gap.mean() < 0.002 and gap.max() < 0.05  # ranks of tied bfloat16 values differ
    inside = mask[0] > 0
    assert torch.equal(fixed[0][~inside], cast.to(dtype)[0][~inside])


def test_color_match_none_and_bad_mode():
    x = torch.rand(1, 8, 8, 3)
    assert color_match(x, x, torch.ones(1, 8, 8), "none") is x
    with pytest.raises(UncropError, match="color_match"):
        color_match(x, x, torch.ones(1, 8, 8), "lut")
    for band in (2.5, 0, None):  # 2.5 was a TypeError deep in a padding
        with pytest.raises(UncropError, match="band: expected a whole number of px"):
            color_match(x, x, torch.ones(1, 8, 8), "mean_std", band=band)


def test_histogram_match_keeps_equal_values_equal(astronaut):
    """A flat area takes one colour (the ring's median, channel by channel in Lab), an
    8-bit gradient's rows stay uniform, and a 1 px hole takes the median, not the
    ring's darkest value: ranking ties in raster order striped them."""
    mask = hole_mask(512, 512)
    inside, ring = mask[0] > 0, (dilate(mask, 32)[0] > 0) & (mask[0] == 0)
    flat = color_match(torch.full_like(astronaut, 0.5), astronaut, mask, "histogram")[0][inside]
    assert torch.equal(flat, flat[:1].expand_as(flat))
    median = torch.quantile(rgb_to_lab(astronaut[0][ring]), 0.5, dim=0)
    assert torch.allclose(rgb_to_lab(flat[0]), median, atol=0.05)
    rows = torch.linspace(0.3, 0.7, 512)[None, :, None, None].expand(1, 512, 512, 3)
    rows = (rows * 255).round() / 255
    out = color_match(rows, astronaut, mask, "histogram")[0, 128:384, 128:384]
    assert torch.equal(out, out[:, :1].expand_as(out))
    dot = torch.zeros(1, 512, 512)
    dot[0, 300, 300] = 1
    ring = (dilate(dot, 32)[0] > 0) & (dot[0] == 0)
    one = rgb_to_lab(color_match(astronaut, astronaut, dot, "histogram")[0, 300, 300])
    assert torch.allclose(
        one, torch.quantile(rgb_to_lab(astronaut[0][ring]), 0.5, dim=0), atol=0.05
    )


def test_histogram_match_past_2_24_reference_values():
    """Quantile positions in float32 rounded up to the end of a reference of 2**24 + 2
    values (a dust-spotted 4K scan's ring) and indexed past it."""
    ref = torch.arange(2**24 + 2, dtype=torch.float32)[:, None]
    out = _match_values(torch.tensor([[0.0], [1.0]]), ref, "histogram", flat=1.0)
    assert out[:, 0].tolist() == [2**22, 3 * 2**22 + 1]  # quantiles 1/4 and 3/4


def test_mean_std_match_does_not_stretch_rounding_noise():
    """A grey fill in a colourful ring takes the ring's mean tint, evenly: its a/b spread
    is float rounding (about 1e-5), which a 1e-6 floor scaled into confetti."""
    gen = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 64, 64, 1, generator=gen).expand(1, 64, 64, 3)
    ref = torch.rand(1, 64, 64, 3, generator=gen)
    mask = hole_mask(64, 64)
    out = rgb_to_lab(color_match(grey, ref, mask, "mean_std")[0][mask[0] > 0])
    assert float(out[:, 1:].std(0).max()) < 0.5
    ring = (dilate(mask, 32)[0] > 0) & (mask[0] == 0)
    tint = rgb_to_lab(ref[0][ring])[:, 1:].mean(0)
    assert torch.allclose(out[:, 1:].mean(0), tint, atol=1.0)


def test_color_match_reads_its_ring_past_a_mask_tail(astronaut):
    """A sigmoid mask, 1e-6 in the background: the tail is no hole, so the ring is
    there to match to (counted as hole, nothing was matched)."""
    mask = hole_mask(512, 512).clamp_min(1e-6)
    cast = (astronaut * 0.6 + torch.tensor([0.3, 0.1, 0.0])).clamp(0, 1)
    fixed = color_match(cast, astronaut, mask, "mean_std")
    assert torch.equal(fixed, color_match(cast, astronaut, hole_mask(512, 512), "mean_std"))
    assert not torch.equal(fixed, cast)


def test_a_transparent_hole_takes_the_generated_image_whole_through_a_soft_edge():
    """Under alpha 0 the colour is hidden (black here): a soft mask's blend kept those
    pixels partly transparent in it. Inside the hole (mask >= 0.5) they take all of the
    generated pixel, below it less as the mask falls, and mask 0 stays exact."""
    orig = torch.rand(1, 32, 32, 4)
    orig[0, 8:24, 8:24] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # erased to transparent black
    mask = hole_mask(32, 32, soft=3)
    gen = torch.rand(1, 32, 32, 3)
    out = composite(orig, gen, mask)
    clear = (mask[0] >= 0.5) & (orig[0, ..., 3] == 0)
    assert clear.any() and (mask[0][clear] < 1).any()  # the soft edge reaches the hole
    assert torch.equal(out[0][clear], torch.cat([gen[0], torch.ones(32, 32, 1)], -1)[clear])
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], orig[0][keep])
    soft = (mask[0] < 0.5) & (mask[0] > 0)
    m, o, g = mask[0][soft].unsqueeze(-1), orig[0][soft], gen[0][soft]
    # Below 0.5 a transparent pixel takes more as the mask nears 0.5 (2m of its clearness)
    w = 1 - (1 - m) * (1 - 2 * m * (1 - o[:, 3:]))
    alpha = o[:, 3:] * (1 - w) + w  # colours weighted by their alpha (premultiplied)
    rgb = (o[:, :3] * o[:, 3:] * (1 - w) + g * w) / alpha
    assert torch.allclose(out[0][soft], torch.cat([rgb, alpha], -1), atol=1e-5)


def test_a_soft_mask_over_transparency_ramps_the_alpha_without_a_step():
    """A 200 px mask ramp over transparent pixels: the alpha rises from 0 at mask 0 to 1
    at mask 0.5 and stays there, with no step (it jumped from 0.5 to 1 at 0.5)."""
    orig = torch.zeros(1, 1, 200, 4)
    mask = torch.linspace(0, 1, 200).view(1, 1, 200)
    out = composite(orig, torch.full((1, 1, 200, 3), 0.8), mask)
    alpha = out[0, 0, :, 3]
    assert float(alpha[0]) == 0.0 and bool((alpha[mask[0, 0] >= 0.5] == 1).all())
    steps = alpha.diff()
    assert bool((steps >= 0).all()) and float(steps.max()) < 0.02
    assert torch.allclose(out[0, 0, 1:, :3], torch.tensor(0.8).expand(199, 3))


def test_a_seam_blends_in_the_masks_place_but_transparency_counts_from_the_mask():
    """The samplers' feathered seam, here half the mask: opaque pixels take the seam's
    share; transparent ones take all of the generated pixel from mask 0.5, and below it
    their share grows with the mask, never compounded from the seam."""
    orig = torch.zeros(1, 1, 21, 4)
    orig[..., 10:, :] = torch.tensor([0.2, 0.2, 0.2, 1.0])  # right half opaque
    mask = torch.linspace(0, 1, 21).view(1, 1, 21)
    mask[..., 10:] = torch.linspace(0, 1, 11)
    gen = torch.full((1, 1, 21, 3), 0.8)
    seam = mask * 0.5
    out = composite(orig, gen, mask, seam)
    m, alpha = mask[0, 0], out[0, 0, :, 3]
    assert bool((alpha[:10][m[:10] >= 0.5] == 1).all())
    soft = m[:10] < 0.5
    want = 1 - (1 - seam[0, 0, :10]) * (1 - 2 * m[:10])
    assert torch.allclose(alpha[:10][soft], want[soft], atol=1e-6)
    assert torch.allclose(out[0, 0, 10:, 0], 0.2 + 0.6 * seam[0, 0, 10:], atol=1e-6)
    assert torch.equal(out[0, 0, 10], orig[0, 0, 10])  # mask 0: exact


def test_a_soft_edge_over_transparency_keeps_the_generated_colour():
    """Straight blending mixed in the hidden black under alpha 0: across a feather the
    colour fell to 0.37 at alpha 0.47, which over white shows darker than both sides."""
    orig = torch.zeros(1, 1, 16, 4)  # transparent, hidden colour black
    gen = torch.full((1, 1, 16, 3), 0.8)
    mask = torch.linspace(1, 0, 16).view(1, 1, 16)
    out = composite(orig, gen, mask)[0, 0]
    seen = mask[0, 0] > 0
    assert torch.allclose(out[seen, :3], torch.tensor(0.8), atol=1e-6)
    assert torch.equal(out[~seen], orig[0, 0][~seen])
    over_white = out[:, :3] * out[:, 3:] + (1 - out[:, 3:])
    assert bool((over_white >= 0.8 - 1e-6).all())


@pytest.mark.parametrize("mode", ["mean_std", "histogram"])
def test_color_match_ignores_the_hidden_colour_of_transparent_pixels(mode):
    """Beside a transparent area (hidden black), a perfect fill of a grey wall stays grey:
    the ring counted the hidden black and pulled the fill half way to it."""
    ref = torch.zeros(1, 64, 64, 4)  # transparent, hidden colour black
    ref[:, 20:44, 16:34] = torch.tensor([0.61, 0.61, 0.61, 1.0])  # a grey cut-out
    mask = torch.zeros(1, 64, 64)
    mask[:, 24:40, 20:30] = 1  # in the cut-out, most of its ring in the transparent area
    out = color_match(ref[..., :3].clone(), ref, mask, mode)
    assert torch.allclose(out[0, 24:40, 20:30, :3], torch.tensor(0.61), atol=0.01)


@pytest.mark.parametrize("mode", ["mean_std", "histogram"])
def test_color_match_reports_each_image_and_stops_at_cancel(astronaut, mode):
    # A batch of 48 at 256 px took 1.5 s with the cancel button ignored.
    image = astronaut[:, ::8, ::8].expand(4, -1, -1, -1)
    mask = torch.zeros(4, 64, 64)
    mask[:, 20:40, 20:40] = 1
    mask[2] = 0  # nothing to match: still reported

    hook = ProgressRecorder(stop=3)
    with pytest.raises(KeyboardInterrupt):
        color_match((image * 0.5).clamp(0, 1), image, mask, mode, progress=hook)
    assert hook.updates == [(1, 4), (2, 4)]


@pytest.mark.parametrize("mode", ["mean_std", "histogram"])
def test_a_batch_on_the_cpu_is_matched_and_blended_on_the_device(astronaut, coffee, mode, device):
    # One image at a time goes to the device and back: the same pixels as a run where
    # the whole batch is there, and the result where the batch was.
    original = torch.cat([astronaut[:, :256, :384], coffee[:, :256, :384]])
    generated = (original.flip(2) * 0.7 + 0.2).clamp(0, 1)
    mask = torch.zeros(2, 256, 384)
    mask[0, 64:192, 96:288] = 1
    mask[1, 32:96, 32:320] = 1
    mask = feather(mask, 6)
    matched = color_match(generated, original, mask, mode, device=device)
    out = composite(original, matched, mask, device=device)
    assert matched.device == out.device == original.device
    there = [t.to(device) for t in (original, generated, mask)]
    assert torch.equal(matched, color_match(there[1], there[0], there[2], mode).cpu())
    assert torch.equal(out, composite(there[0], matched.to(device), there[2]).cpu())
    keep = mask == 0
    assert torch.equal(out[keep], original[keep]) and torch.equal(matched[keep], generated[keep])
