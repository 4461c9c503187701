import logging

import pytest
import torch
import torch.nn.functional as F

from uncrop.core.errors import UncropError
from uncrop.core.inputs import check_image, check_mask, is_empty, match_mask


def test_image_gains_batch_and_keeps_values():
    img = torch.rand(8, 6, 3)
    out = check_image(img)
    assert out.shape == (1, 8, 6, 3)
    assert torch.equal(out[0], img)


@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4, 2), (1, 4, 4, 5), (2, 3, 4, 4, 3)])
def test_image_wrong_shape_names_input_and_shape(shape):
    with pytest.raises(UncropError, match=r"image: expected an IMAGE .* got \["):
        check_image(torch.rand(shape))


def test_image_nan_refused():
    img = torch.rand(1, 4, 4, 3)
    img[0, 1, 1, 0] = float("nan")
    with pytest.raises(UncropError, match="NaN"):
        check_image(img)


def test_image_integer_dtype_refused():
    with pytest.raises(UncropError, match="^image: expected float values in 0..1, got dtype"):
        check_image(torch.zeros(1, 4, 4, 3, dtype=torch.uint8))


@pytest.mark.parametrize("shape", [(5, 7), (1, 5, 7), (1, 1, 5, 7), (1, 5, 7, 1)])
def test_mask_layouts_normalised(shape):
    assert check_mask(torch.rand(shape)).shape == (1, 5, 7)


def test_mask_values_clamped():
    m = check_mask(torch.tensor([[[-0.25, 0.5, 1.25]]]))  # a resampler's overshoot
    assert m.tolist() == [[[0.0, 0.5, 1.0]]]


@pytest.mark.parametrize("values", [[0.0, 64.0, 255.0], [-1.0, 0.0, 1.0]])
def test_float_mask_on_another_scale_refused(values):
    """Clamped, a 0..255 float mask made every soft value 1: refused, by name."""
    with pytest.raises(UncropError, match=r"mask: values run from .* a MASK holds floats"):
        check_mask(torch.tensor([[values]]))


def test_integer_masks_of_0_and_1_only():
    """A 0/1 integer mask (or a bool one) is a mask; 0..255 would be clamped to a hard
    one, so it is refused, naming the input."""
    m = torch.zeros(1, 4, 4, dtype=torch.uint8)
    m[0, 1:3, 1:3] = 1
    assert torch.equal(check_mask(m), m.float())
    assert torch.equal(check_mask(m.bool()), m.float())
    m[0, 0, 0] = 128
    with pytest.raises(UncropError, match="mask: expected float values in 0..1 .* up to 128"):
        check_mask(m)


def test_single_mask_broadcast_over_batch():
    image, one = torch.rand(3, 8, 8, 3), torch.rand(1, 8, 8)
    img, mask = match_mask(image, one)
    assert torch.equal(img, image) and mask.shape == (3, 8, 8)
    assert all(torch.equal(m, one[0]) for m in mask)


def test_single_image_broadcast_over_masks():
    one, masks = torch.rand(1, 8, 8, 3), torch.rand(4, 8, 8)
    img, mask = match_mask(one, masks)
    assert torch.equal(mask, masks) and img.shape == (4, 8, 8, 3)
    assert all(torch.equal(i, one[0]) for i in img)


def test_batch_mismatch_names_both_shapes():
    with pytest.raises(
        UncropError,
        match=r"mask batch of 2 does not match image batch of 3.*\[2, 8, 8\].*\[3, 8, 8, 3\]",
    ):
        match_mask(torch.rand(3, 8, 8, 3), torch.rand(2, 8, 8))


def test_same_aspect_mask_resized_with_warning(caplog):
    mask = torch.zeros(1, 4, 8)
    mask[:, :, 4:] = 1
    with caplog.at_level(logging.WARNING):
        _, out = match_mask(torch.rand(1, 8, 16, 3), mask)
    assert out.shape == (1, 8, 16)
    assert out[0, :, :6].max() == 0 and out[0, :, 10:].min() == 1
    assert "Resizing mask" in caplog.text


def test_other_aspect_mask_refused():
    with pytest.raises(
        UncropError, match="^mask size 8x8 has a different aspect ratio than image size 16x8"
    ):
        match_mask(torch.rand(1, 8, 16, 3), torch.rand(1, 8, 8))


def test_a_mask_of_one_value_fits_any_size(caplog):
    """LoadImage's mask of an image with no alpha is a blank 64x64: the same at any size."""
    masks = torch.stack([torch.zeros(64, 64), torch.full((64, 64), 0.5)])
    with caplog.at_level(logging.WARNING):
        _, out = match_mask(torch.rand(2, 30, 90, 3), masks)
    assert out.shape == (2, 30, 90)
    assert out[0].max() == 0 and out[1].min() == out[1].max() == 0.5
    assert "64x64 with one value" in caplog.text


def test_is_empty():
    assert is_empty(torch.zeros(2, 4, 4))
    assert not is_empty(torch.full((1, 4, 4), 1 / 255))  # one 8-bit level is hole
    assert is_empty(torch.full((1, 4, 4), 0.99 / 255))
    assert not is_empty(torch.zeros(2, 4, 4).index_fill_(2, torch.tensor([1]), 0.01))


def test_a_shrunk_mask_keeps_thin_strokes_and_a_source_mask_stays_inside() -> None:
    image = torch.rand(1, 128, 128, 3)
    mask = torch.zeros(1, 512, 512)
    mask[0, 103:105, 203:205] = 1  # 2 px: half a pixel at a quarter of the size
    _, small = match_mask(image, mask)
    assert small.shape == (1, 128, 128) and float(small.max()) == 1.0
    assert torch.nonzero(small[0]).tolist() == [[25, 50], [25, 51], [26, 50], [26, 51]]
    allowed = torch.ones(1, 512, 512)
    allowed[0, :, :6] = 0
    _, small = match_mask(image, allowed, marks_fill=False)
    assert small[0, :, :2].max() == 0 and small[0, :, 2:].min() == 1
    _, big = match_mask(torch.rand(1, 256, 256, 3), small[:, ::2, ::2].contiguous())
    assert big.shape == (1, 256, 256)  # growing is bilinear
    grown = F.interpolate(
        small[:, None, ::2, ::2], (256, 256), mode="bilinear", align_corners=False
    )
    assert torch.equal(big, grown[:, 0].clamp(0, 1))
    assert bool(((big > 0) & (big < 1)).any())  # soft at the stroke's edge


def test_one_mask_for_a_batch_is_resized_once(monkeypatch):
    """It was expanded to the batch first: 100 images and one 2048 px mask took 3 s and
    2 GB, resizing the same mask 100 times."""
    import uncrop.core.inputs as inputs

    sizes = []
    real = inputs.resize_mask
    monkeypatch.setattr(
        inputs, "resize_mask", lambda m, *a, **k: sizes.append(m.shape[0]) or real(m, *a, **k)
    )
    mask = torch.zeros(1, 256, 256)
    mask[:, 64:128, 32:96] = 1
    image, matched = match_mask(torch.rand(100, 64, 64, 3), mask)
    assert sizes == [1] and matched.shape == (100, 64, 64)
    assert torch.equal(matched[57], real(mask, 64, 64)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_mask_in_the_images_dtype_keeps_its_hole(dtype):
    # float16 rounds 0.00392 (under 1/255: a known pixel) up to its own 1/255.
    mask = torch.tensor([[[0.0, 0.00392, 1 / 255, 0.5, 1.0]]])
    image, out = match_mask(torch.zeros(1, 1, 5, 3, dtype=dtype), mask)
    assert out.dtype == dtype
    assert (out >= 1 / 255).tolist() == [[[False, False, True, True, True]]]
    assert torch.allclose(out.double(), mask.double(), atol=1e-3)


@pytest.mark.parametrize("layout", ["BHW1", "B1HW"])
@pytest.mark.parametrize("size", [(1, 8), (8, 1), (5, 7)])
def test_a_four_dimensional_mask_fits_a_row_or_a_column(layout, size):
    # [1,1,8,1] is a row as [B,H,W,1] and a column as [B,1,H,W]: the image decides.
    mask = torch.rand(1, *size)
    given = mask[..., None] if layout == "BHW1" else mask[:, None]
    _, out = match_mask(torch.zeros(1, *size, 3), given)
    assert torch.equal(out, mask)
