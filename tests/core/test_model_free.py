import pytest
import torch
from conftest import ProgressRecorder

from uncrop.core import canvas, model_free
from uncrop.core.errors import UncropError
from uncrop.core.fill import FILL_METHODS
from uncrop.core.inputs import SEED_LIMIT


def test_inpaint_keeps_unmasked_pixels_and_fills_hole(coffee, device):
    mask = torch.zeros(1, 400, 600)
    mask[:, 150:250, 250:350] = 1
    out = model_free.inpaint(coffee.to(device), mask.to(device), "smooth").cpu()
    assert out.shape == coffee.shape
    assert torch.equal(out[:, :150], coffee[:, :150]) and torch.equal(
        out[:, :, :250], coffee[:, :, :250]
    )
    # The hole now holds colours from its surroundings, not the original content.
    assert (out[:, 150:250, 250:350] - coffee[:, 150:250, 250:350]).abs().mean() > 0.01


def test_inpaint_fills_and_blends_a_cpu_batch_on_the_device(coffee, device):
    images = torch.cat([coffee[:, :128, :160], coffee[:, 200:328, 300:460]])
    mask = torch.zeros(1, 128, 160)
    mask[:, 40:90, 50:120] = 1
    out = model_free.inpaint(images, mask, "patch", seed=5, device=device)
    assert out.device == images.device
    there = model_free.inpaint(images.to(device), mask.to(device), "patch", seed=5)
    assert torch.equal(out, there.cpu())


def test_empty_mask_returns_input_untouched(coffee):
    out = model_free.inpaint(coffee, torch.zeros(1, 400, 600), "smooth")
    assert torch.equal(out, coffee)


def test_outpaint_keeps_original_and_sizes(coffee, device):
    plan = canvas.plan_target(600, 400, 1024, 512, fit="pad", anchor="center", multiple_of=64)
    out, mask = model_free.outpaint(coffee.to(device), plan, "mirror", overlap=16)
    assert out.device == mask.device == coffee.to(device).device
    out, mask = out.cpu(), mask.cpu()
    assert out.shape == (1, 512, 1024, 3) and mask.shape == (1, 512, 1024)
    ys, xs, sy, sx = canvas.known_region(plan)
    placed = canvas.resize_image(coffee, plan.scaled_w, plan.scaled_h)
    assert torch.equal(out[:, ys, xs], placed[:, sy, sx])
    assert out[:, :, : plan.x].std() > 0.01  # the new band holds image content, not a flat colour
    # the overlap band reaches 16 px into the image on the grown sides
    assert mask[0, 256, plan.x + 8] > 0 and mask[0, 256, plan.x + 20] == 0


def test_outpaint_without_new_area_is_a_resize(coffee):
    plan = canvas.plan_target(600, 400, 300, 200, fit="stretch", multiple_of=1)
    out, mask = model_free.outpaint(coffee, plan)
    assert out.shape == (1, 200, 300, 3) and mask.max() == 0
    assert torch.equal(out, canvas.resize_image(coffee, 300, 200))


def test_outpaint_source_mask_is_moved_onto_the_canvas(coffee):
    image = coffee.clone()
    image[:, :, :60] = torch.tensor([1.0, 0.0, 1.0])  # magenta strip at the left edge
    source = torch.ones(1, 400, 600)
    source[:, :, :70] = 0  # never copy from the strip
    plan = canvas.plan_margins(600, 400, left=48, multiple_of=8)
    out, _ = model_free.outpaint(image, plan, "patch", source_mask=source, patch_size=5)
    band = out[0, :, : plan.x].reshape(-1, 3)
    magenta = (band[:, 0] > 0.8) & (band[:, 1] < 0.25) & (band[:, 2] > 0.8)
    assert not magenta.any()
    unrestricted, _ = model_free.outpaint(image, plan, "patch", patch_size=5)
    band = unrestricted[0, :, : plan.x].reshape(-1, 3)
    assert (
        (band[:, 0] > 0.8) & (band[:, 1] < 0.25) & (band[:, 2] > 0.8)
    ).any()  # the test can fail


def test_outpaint_reads_the_source_mask_only_for_the_methods_that_copy(coffee):
    plan = canvas.plan_margins(600, 400, left=48, multiple_of=8)
    wrong = torch.rand(1, 50, 50)  # another aspect: refused where it is read
    out, _ = model_free.outpaint(coffee, plan, "mirror", source_mask=wrong)
    assert torch.equal(out, model_free.outpaint(coffee, plan, "mirror")[0])
    with pytest.raises(UncropError, match="source_mask size 50x50"):
        model_free.outpaint(coffee, plan, "pattern", source_mask=wrong)


def test_outpaint_fills_a_batch_one_image_at_a_time_on_the_device(coffee, device, monkeypatch):
    images = torch.cat([coffee[:, :96, :128], coffee[:, 200:296, 300:428]])
    plan = canvas.plan_margins(128, 96, left=24, right=8, multiple_of=8)
    seed = SEED_LIMIT - 1  # the second image's seed wraps to 0
    given = []
    noise = FILL_METHODS["noise"]

    def seen(image, hole, **options):
        given.append((image.device, image.shape[0]))
        return noise(image, hole, **options)

    monkeypatch.setitem(FILL_METHODS, "noise", seen)
    asked = ProgressRecorder()
    out, mask = model_free.outpaint(
        images, plan, "noise", overlap=4, seed=seed, progress=asked, device=device
    )
    assert given == [(device, 1), (device, 1)]
    assert out.device == mask.device == images.device  # the batch stays where it was
    assert out.shape == (2, 96, 160, 3) and mask.shape == (2, 96, 160)
    assert asked.updates[-1] == (2, 2)
    for i, s in enumerate((seed, 0)):
        alone, alone_mask = model_free.outpaint(images[i : i + 1], plan, "noise", overlap=4, seed=s)
        assert torch.equal(out[i : i + 1], alone) and torch.equal(mask[i : i + 1], alone_mask)
    assert not torch.equal(out[0, :, :24], out[1, :, :24])


def test_outpaint_takes_one_source_mask_per_image(coffee):
    images = torch.cat([coffee[:, :96, :128], coffee[:, 200:296, 300:428]])
    plan = canvas.plan_margins(128, 96, left=16, multiple_of=8)
    sources = torch.ones(2, 96, 128)
    sources[0, :, :64] = 0
    sources[1, :, 64:] = 0
    out, _ = model_free.outpaint(images, plan, "patch", source_mask=sources, seed=3)
    for i in range(2):
        alone, _ = model_free.outpaint(
            images[i : i + 1], plan, "patch", source_mask=sources[i], seed=3 + i
        )
        assert torch.equal(out[i : i + 1], alone)
    with pytest.raises(UncropError, match="source_mask batch of 3 does not match image batch"):
        model_free.outpaint(images, plan, "patch", source_mask=torch.ones(3, 96, 128))
    with pytest.raises(UncropError, match=r"source_mask: a batch of 2 for 1 image"):
        model_free.outpaint(images[:1], plan, "patch", source_mask=sources)
