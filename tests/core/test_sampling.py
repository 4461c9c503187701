"""core/sampling.py with tiny random models: geometry, exactness, seeds, batch, cancel."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import ProgressRecorder

from uncrop.core import canvas, models, sampling
from uncrop.core.errors import UncropError
from uncrop.core.sampling import SamplerSettings, SampleWindow

FAST = {"steps": 2, "guidance": 2.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


_HELD: list[models.InpaintModel] = []  # nothing in the pack keeps a model loaded


def _load(tree, name, **kw):
    """The tiny model ``name``, each family read once for the session."""
    _HELD.append(models.load_model(tree[name], **kw))
    return _HELD[-1]


@pytest.fixture(scope="session")
def sd_inpaint(tree):
    return _load(tree, "sd-inpaint")


@pytest.fixture(scope="session")
def photo(astronaut):
    return canvas.resize_image(astronaut, 128, 96)


def _hole(h=96, w=128, box=(40, 30, 72, 54)):
    mask = torch.zeros(1, h, w)
    x0, y0, x1, y1 = box
    mask[:, y0:y1, x0:x1] = 1.0
    return mask


class UnetSpy:
    """Counts UNet calls and records the latent size each one saw."""

    def __init__(self, unet):
        self.sizes: list[tuple[int, int]] = []
        self._handle = unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.sizes.append(tuple(args[0].shape[-2:]))

    def close(self):
        self._handle.remove()


# --- geometry ---------------------------------------------------------------------------


def test_window_is_the_mask_box_plus_context_at_native_size():
    win = SampleWindow.around((2000, 1000, 2064, 1064), 4096, 4096, 512, 64, context=0.5)
    assert (win.x0, win.y0, win.x1, win.y1) == (1968, 968, 2096, 1096)
    assert (win.sample_w, win.sample_h) == (512, 512)


def test_window_stays_inside_the_image_and_keeps_the_aspect_at_its_edge():
    win = SampleWindow.around((0, 10, 30, 200), 300, 220, 512, 64, context=0.25)
    assert win.x0 == 0 and win.y0 == 0 and win.x1 <= 300 and win.y1 == 220
    assert win.sample_w % 64 == 0 and win.sample_h % 64 == 0
    ratio = (win.sample_w / win.sample_h) / (win.width / win.height)
    assert 0.8 < ratio < 1.25


def test_tiles_cover_the_box_with_overlap():
    tiles = sampling.tile_windows((0, 0, 1000, 300), 1000, 300, 256, overlap=64)
    covered = torch.zeros(300, 1000, dtype=torch.bool)
    for t in tiles:
        assert (t.width, t.height) == (256, 256)
        covered[t.slices] = True
    assert bool(covered.all())
    xs = sorted({t.x0 for t in tiles})
    assert all(b - a <= 256 - 64 for a, b in zip(xs, xs[1:], strict=False))


def test_short_tiles_keep_their_shape():
    # A canvas 24 px high, sampled at a multiple of 64: the tile was 512x24 sampled at
    # 512x64 (stretched 2.7 times up); both sides now scale alike.
    for height in (24, 40, 100):
        for tile in sampling.tile_windows((0, 0, 4096, height), 4096, height, 512, 128, 64):
            stretch = (tile.sample_h / tile.height) / (tile.sample_w / tile.width)
            assert tile.sample_h % 64 == 0 and tile.sample_w % 64 == 0
            assert 0.9 < stretch < 1.1 and tile.sample_h >= 64


def test_strips_too_thin_to_keep_their_shape_stay_within_the_model_size():
    for height in (1, 2):  # kept in shape, a 512x1 tile would be sampled at 32768x64
        for tile in sampling.tile_windows((0, 0, 4096, height), 4096, height, 512, 128, 64):
            assert (tile.sample_w, tile.sample_h) == (512, 64)


def _two_holes(h=96, w=128):
    mask = torch.zeros(1, h, w)
    mask[:, 4:10, 4:12] = 1  # top left
    mask[:, 84:92, 110:122] = 1  # bottom right
    return mask


def test_holes_far_apart_get_a_window_each(sd_inpaint):
    settings = SamplerSettings(**FAST)
    plan = sampling._plan_windows(sd_inpaint, _two_holes()[0], settings, tiles=False)
    # One window around both would be the whole 128x96 image, sampled at 64 px.
    assert len(plan) == 2 and not sampling._overlap(*plan)
    assert (plan[0].x0, plan[0].y0, plan[0].x1, plan[0].y1) == (0, 0, 40, 40)
    assert plan[1].x1 == 128 and plan[1].y1 == 96 and plan[1].width <= 48 < plan[1].x0
    assert all((w.sample_w, w.sample_h) == (64, 64) for w in plan)
    near = torch.zeros(1, 96, 128)
    near[:, 30:40, 30:40] = near[:, 30:40, 60:70] = 1  # windows that overlap: one
    assert len(sampling._plan_windows(sd_inpaint, near[0], settings, tiles=False)) == 1
    dust = torch.zeros(96, 128)
    dust[::12, ::12] = 1  # 88 specks: more than are grouped, one window around all
    assert len(sampling._plan_windows(sd_inpaint, dust, settings, tiles=False)) == 1
    nine = torch.zeros(300, 300)
    for k in range(9):  # 9 holes apart: more windows than WINDOWS_APART, one around all
        nine[(k // 3) * 120 + 2 : (k // 3) * 120 + 6, (k % 3) * 120 + 2 : (k % 3) * 120 + 6] = 1
    assert len(sampling._plan_windows(sd_inpaint, nine, settings, tiles=False)) == 1


def test_holes_far_apart_are_each_painted_at_model_size(tree, sd_inpaint, photo):
    mask = _two_holes()
    spy = UnetSpy(sd_inpaint.pipe.unet)
    try:
        result = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(**FAST))
    finally:
        spy.close()
    assert len(result.windows[0]) == 2
    scale = sd_inpaint.vae_scale_factor
    assert spy.sizes == [(64 // scale, 64 // scale)] * 4  # two steps a window, at 64 px
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], photo[0][keep])
    for box in ((slice(4, 10), slice(4, 12)), (slice(84, 92), slice(110, 122))):
        assert (result.image[0][box] - photo[0][box]).abs().mean() > 0.01  # both painted
    again = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(**FAST)).image
    assert torch.equal(again, result.image)
    # The last seed: each window's (and a batch image's) seed wraps around, pre-fill too.
    last = SamplerSettings(seed=2**64 - 1, prefill="edge", **FAST)
    model = _load(tree, "sd")  # sees the pre-fill
    twice = sampling.inpaint(model, torch.cat([photo, photo]), mask, last).image
    alone = sampling.inpaint(model, photo, mask, dataclasses.replace(last, seed=999)).image
    assert torch.equal(twice[1:], alone)  # image 1 takes seed + 1000, wrapped: 999
    assert not torch.equal(twice[:1], alone)


def test_mask_box():
    assert sampling.mask_box(_hole()[0]) == (40, 30, 72, 54)
    assert sampling.mask_box(torch.zeros(8, 8)) is None
    two = torch.zeros(20, 30)
    two[2, 25] = 0.1  # top right, faint
    two[15:17, 3:5] = 1  # bottom left
    assert sampling.mask_box(two) == (3, 2, 26, 17)
    two += 1e-4  # a sigmoid's tail: under one 8-bit step, not hole
    assert sampling.mask_box(two) == (3, 2, 26, 17)


# --- inpainting -------------------------------------------------------------------------


def test_only_the_crop_is_sampled_and_unmasked_pixels_are_exact(sd_inpaint, photo):
    mask = _hole()
    spy = UnetSpy(sd_inpaint.pipe.unet)
    try:
        result = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(prompt="a cat", **FAST))
    finally:
        spy.close()
    assert result.image.shape == photo.shape
    (win,) = result.windows[0]
    assert (win.x0, win.y0, win.x1, win.y1) == (24, 10, 88, 74)  # 32x24 box + 16 px context
    assert (win.sample_w, win.sample_h) == (64, 64)  # the tiny model's native size
    scale = sd_inpaint.vae_scale_factor
    assert spy.sizes == [(64 // scale, 64 // scale)] * 2
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], photo[0][keep])
    assert (result.image[0][~keep] - photo[0][~keep]).abs().mean() > 0.01


def test_same_seed_same_pixels_other_seed_other_pixels(sd_inpaint, photo):
    mask = _hole()
    a = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(seed=5, **FAST)).image
    b = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(seed=5, **FAST)).image
    c = sampling.inpaint(sd_inpaint, photo, mask, SamplerSettings(seed=6, **FAST)).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


LONG = " ".join(["red barn"] * 40)  # past the 75 tokens one pass of the encoder reads


@pytest.mark.parametrize("name", ["sd-inpaint", "sd2-inpaint.safetensors", "sdxl-inpaint"])
def test_a_long_prompt_is_encoded_in_pieces_as_the_pipeline_encodes_one(tree, name, monkeypatch):
    """Each 75-token piece is encoded as the pipeline encodes a short prompt, and a
    short text beside a long one is repeated, which leaves cross-attention as it was."""
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))  # for the single file
    model = _load(tree, name)
    pipe = model.pipe
    assert sampling.long_prompt_embeds(model, "a red barn", "blurry") is None  # pipeline's own
    embeds = sampling.long_prompt_embeds(model, "a red barn", LONG)
    want = pipe.encode_prompt(
        prompt="a red barn",
        device="cpu",
        num_images_per_prompt=1,
        do_classifier_free_guidance=False,
    )
    pieces = embeds["prompt_embeds"].shape[1] // 77
    assert pieces >= 2 and embeds["prompt_embeds"].shape[1] == 77 * pieces
    assert torch.allclose(embeds["prompt_embeds"], want[0].repeat(1, pieces, 1), atol=1e-6)
    assert embeds["negative_prompt_embeds"].shape == embeds["prompt_embeds"].shape
    if name.startswith("sdxl"):
        assert torch.allclose(embeds["pooled_prompt_embeds"], want[2], atol=1e-6)
        no_negative = sampling.long_prompt_embeds(model, LONG, "")
        assert not no_negative["negative_prompt_embeds"].any()  # zeros, as the model asks


def test_long_text_is_cut_between_words_as_comfyui_cuts_it(sd_inpaint):
    tokenizer = sd_inpaint.pipe.tokenizer
    barn = tokenizer("barn", add_special_tokens=False).input_ids  # 4 tokens in the tiny vocab
    pieces = sampling._token_pieces(tokenizer, " ".join(["barn"] * 30))
    assert [len(p) for p in pieces] == [72, 48]  # the 19th word starts the second piece
    assert all(p == barn * (len(p) // 4) for p in pieces)
    # A word longer than SPLIT_WORDS_OVER tokens is split to fill each piece.
    long_word = sampling._token_pieces(tokenizer, " ".join(["countryside"] * 30))
    assert len(tokenizer("countryside", add_special_tokens=False).input_ids) > 8
    assert [len(p) for p in long_word] == [75, 75, 75, 75]
    assert sampling._token_pieces(tokenizer, "") == [[]]


def test_far_apart_piece_counts_pad_instead_of_repeating_without_end(tree):
    model = _load(tree, "sd-inpaint")
    one = sampling.long_prompt_embeds(model, LONG, "a")["prompt_embeds"].shape[1] // 77
    five, seven = " ".join([LONG] * 5), " ".join([LONG] * 7)
    counts = [
        sampling.long_prompt_embeds(model, t, "a")["prompt_embeds"].shape[1] // 77
        for t in (five, seven)
    ]
    assert one >= 2 and math.lcm(*counts) > sampling.MAX_REPEAT * max(counts)
    embeds = sampling.long_prompt_embeds(model, five, seven)
    assert embeds["prompt_embeds"].shape == embeds["negative_prompt_embeds"].shape
    assert embeds["prompt_embeds"].shape[1] == 77 * max(counts)


def test_at_guidance_1_a_long_negative_prompt_changes_nothing(tree, photo):
    # The pipeline reads no negative prompt then; it lengthened the prompt's embeddings.
    model, mask = _load(tree, "sd-inpaint"), _hole()
    s = {"steps": 2, "guidance": 1.0, "prompt": "a barn"}
    short = sampling.inpaint(model, photo, mask, SamplerSettings(negative_prompt="blur", **s))
    long = sampling.inpaint(model, photo, mask, SamplerSettings(negative_prompt=LONG, **s))
    assert torch.equal(short.image, long.image)


@pytest.mark.parametrize("name", ["sd-inpaint", "sdxl-inpaint"])
def test_words_past_75_tokens_reach_the_model(tree, photo, name):
    # The pipeline used to cut them off: both prompts gave the same pixels.
    model, mask = _load(tree, name), _hole()
    dusk = sampling.inpaint(model, photo, mask, SamplerSettings(prompt=LONG + " at dusk", **FAST))
    noon = sampling.inpaint(model, photo, mask, SamplerSettings(prompt=LONG + " at noon", **FAST))
    again = sampling.inpaint(model, photo, mask, SamplerSettings(prompt=LONG + " at dusk", **FAST))
    assert torch.equal(dusk.image, again.image) and not torch.equal(dusk.image, noon.image)
    keep = mask[0] == 0
    assert torch.equal(dusk.image[0][keep], photo[0][keep])


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m", "unipc"])
def test_a_scheduler_is_the_same_whatever_ran_before(sd_inpaint, photo, scheduler):
    """Every run builds its scheduler from the checkpoint's settings, not the last run's
    (a Karras run used to leave its sigmas to the next plain one)."""
    mask, s = _hole(), SamplerSettings(scheduler=scheduler, seed=3, **FAST)
    a = sampling.inpaint(sd_inpaint, photo, mask, s).image
    karras = SamplerSettings(scheduler="dpmpp_2m_karras", seed=3, **FAST)
    sampling.inpaint(sd_inpaint, photo, mask, karras)
    assert not sampling.make_scheduler(sd_inpaint, scheduler).config.get("use_karras_sigmas")
    assert torch.equal(sampling.inpaint(sd_inpaint, photo, mask, s).image, a)


def test_each_device_in_its_own_dtype_repeats_seeds_and_keeps_unmasked_pixels(tree, photo, device):
    """What a user's machine runs: the model in the device's dtype (bfloat16 or float16
    on a GPU, float32 on the CPU), the image on the same device."""
    model = _load(tree, "sd-inpaint", dtype=models.pick_dtype(device)).to(device)
    image, mask = photo.to(device), _hole().to(device)
    try:
        a, b, c = (
            sampling.inpaint(model, image, mask, SamplerSettings(seed=s, **FAST)).image
            for s in (5, 5, 6)
        )
    finally:
        model.to("cpu")
    assert a.device == image.device and a.dtype == image.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    keep = mask[0] == 0
    assert torch.equal(a[0][keep], image[0][keep])
    assert (a[0][~keep] - image[0][~keep]).abs().mean() > 0.01


def test_batch_with_one_mask_per_image(sd_inpaint, photo):
    images = torch.cat([photo, photo.flip(2)])
    masks = torch.cat([_hole(), _hole(box=(90, 60, 120, 90))])
    result = sampling.inpaint(sd_inpaint, images, masks, SamplerSettings(**FAST))
    assert result.image.shape == images.shape
    assert [w[0].x1 for w in result.windows] == [88, 128]
    for i in range(2):
        keep = masks[i] == 0
        assert torch.equal(result.image[i][keep], images[i][keep])


@pytest.mark.parametrize("prefill", ["noise", "patch"])
def test_each_image_of_a_batch_repeats_alone_with_its_seed(tree, photo, prefill):
    # A model that sees the pre-fill (not an inpainting one): image i of a batch takes
    # seed + 1000 i for its noise and for a random pre-fill, so it can be re-run alone.
    model = _load(tree, "sd")
    mask = _hole()
    settings = SamplerSettings(prompt="a cat", prefill=prefill, seed=7, **FAST)
    batch = sampling.inpaint(model, torch.cat([photo, photo]), mask, settings).image
    alone = sampling.inpaint(model, photo, mask, dataclasses.replace(settings, seed=1007)).image
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_an_empty_mask_returns_the_image_untouched(sd_inpaint, photo):
    result = sampling.inpaint(sd_inpaint, photo, torch.zeros(1, 96, 128), SamplerSettings(**FAST))
    assert torch.equal(result.image, photo)


class StopAfter:
    def __init__(self, steps):
        self.steps, self.updates = steps, []

    def update(self, done, total, preview=None):
        self.updates.append((done, total))

    def check_interrupted(self):
        if len(self.updates) >= self.steps:
            raise KeyboardInterrupt("cancelled")


def test_cancel_stops_within_one_step(sd_inpaint, photo):
    hook = StopAfter(2)
    spy = UnetSpy(sd_inpaint.pipe.unet)
    try:
        with pytest.raises(KeyboardInterrupt):
            sampling.inpaint(sd_inpaint, photo, _hole(), SamplerSettings(steps=6), progress=hook)
    finally:
        spy.close()
    assert hook.updates == [(1, 6), (2, 6)]
    assert len(spy.sizes) == 2


def test_cancel_reaches_a_slow_prefill(tree, photo):
    # A patch pre-fill of a big hole can take long: it asks the same cancel button,
    # without moving the sampler's step count.
    model = _load(tree, "sd")
    counts = {}
    for prefill in ("edge", "patch"):
        hook = ProgressRecorder()
        settings = SamplerSettings(prefill=prefill, **FAST)
        sampling.inpaint(model, photo, _hole(), settings, progress=hook)
        counts[prefill] = hook.checks
        assert hook.updates == [(1, 2), (2, 2)]
    assert counts["patch"] > counts["edge"] + 3


def test_preview_gets_the_latents_each_step(sd_inpaint, photo):
    seen = []

    def preview(latents):
        seen.append(tuple(latents.shape))
        return torch.zeros(1, 8, 8, 3)

    sampling.inpaint(sd_inpaint, photo, _hole(), SamplerSettings(**FAST), preview=preview)
    assert seen == [(1, 4, 16, 16)] * 2


class FakeCaptioner:
    def __init__(self):
        self.calls = []

    def caption(self, image, mask, progress):
        progress.check_interrupted()
        self.calls.append((tuple(image.shape), None if mask is None else tuple(mask.shape)))
        return [f"a red tree number {i}" for i in range(image.shape[0])]


def test_empty_prompt_uses_the_captioner_and_the_caption_reaches_the_tokenizer(
    sd_inpaint, photo, monkeypatch
):
    tokenizer_cls = type(sd_inpaint.pipe.tokenizer)
    texts = []
    original = tokenizer_cls.__call__

    def spy(self, text=None, *args, **kwargs):
        texts.append(text)
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(tokenizer_cls, "__call__", spy)
    captioner = FakeCaptioner()
    result = sampling.inpaint(
        sd_inpaint, photo, _hole(), SamplerSettings(prompt="  ", **FAST), captioner=captioner
    )
    assert result.prompts == ["a red tree number 0"]
    assert captioner.calls == [((1, 96, 128, 3), (1, 96, 128))]
    assert any(t == ["a red tree number 0"] or t == "a red tree number 0" for t in texts)


def test_cancel_reaches_the_captioner(sd_inpaint, photo):
    class Cancelled:
        def update(self, done, total, preview=None):
            raise AssertionError("the bar moved before the caption")

        def check_interrupted(self):
            raise InterruptedError

    captioner = FakeCaptioner()
    settings = SamplerSettings(prompt="", **FAST)
    with pytest.raises(InterruptedError):
        sampling.inpaint(
            sd_inpaint, photo, _hole(), settings, captioner=captioner, progress=Cancelled()
        )
    assert captioner.calls == []


def test_a_given_prompt_wins_over_the_captioner(sd_inpaint, photo):
    captioner = FakeCaptioner()
    result = sampling.inpaint(
        sd_inpaint, photo, _hole(), SamplerSettings(prompt="a dog", **FAST), captioner=captioner
    )
    assert result.prompts == ["a dog"] and captioner.calls == []


def test_a_batchs_captions_as_the_prompt_paint_each_image_with_its_own(
    sd_inpaint, photo, monkeypatch
):
    """Caption Image's text for a batch: one line per image, and each image is encoded
    with its line alone (as plain text every image got both lines)."""
    from uncrop.core.caption import Captions

    pipe_cls = type(sd_inpaint.pipe)
    original = pipe_cls.__call__
    prompts_seen = []

    def spy(self, *args, **kwargs):
        prompts_seen.append(kwargs.get("prompt"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pipe_cls, "__call__", spy)
    batch = photo.expand(2, -1, -1, -1)
    captions = Captions(["a red tree", "a blue sky"])
    result = sampling.inpaint(sd_inpaint, batch, _hole(), SamplerSettings(prompt=captions, **FAST))
    assert result.prompts == ["a red tree", "a blue sky"]
    assert prompts_seen == ["a red tree", "a blue sky"]
    one = sampling.inpaint(
        sd_inpaint, batch, _hole(), SamplerSettings(prompt=Captions(["a red tree"]), **FAST)
    )
    assert one.prompts == ["a red tree"] * 2
    with pytest.raises(
        UncropError, match="prompt: 2 captions, one for each image captioned, for 3"
    ):
        sampling.inpaint(
            sd_inpaint, photo.expand(3, -1, -1, -1), _hole(), SamplerSettings(prompt=captions)
        )


def test_bad_settings_name_the_setting(sd_inpaint, photo):
    for bad, name in [
        ({"scheduler": "lms"}, "scheduler"),
        ({"strength": 0}, "strength"),
        ({"strength": float("nan")}, r"strength: expected a value in \(0, 1\], got nan"),
        ({"strength": 0.01, "steps": 20}, "strength: 0.01 of 20 steps leaves no denoising step"),
        ({"seed": 2**64}, "seed: expected a whole number from 0 to 2"),
        # inf failed only after sampling (a NaN blur), NaN not at all
        ({"mask_blur": float("inf")}, "mask_blur: expected 0 to 512 px, got inf"),
        ({"steps": 2.5}, "steps: expected a whole number from 1 to 1000, got 2.5"),  # diffusers
        ({"prompt": None}, "prompt: expected text, got None"),
        ({"mask_blur": 1e12}, "mask_blur: expected 0 to 512 px"),
        ({"guidance": float("nan")}, "guidance: expected 0 to 100, got nan"),
        ({"context": -0.1}, "context: expected 0 to 16"),
        ({"controlnet_scale": float("nan")}, "controlnet_scale: expected 0 to 10"),
        # these came as raw TypeErrors, after the model had loaded (resolution 64.0 once
        # windows were cut), or in color_match's case after every window was sampled
        ({"strength": None}, r"strength: expected a value in \(0, 1\], got None"),
        ({"strength": True}, r"strength: expected a value in \(0, 1\], got True"),
        ({"resolution": 64.0}, "resolution: expected 0 .native. or a whole number of px"),
        ({"resolution": "128"}, "resolution: expected 0 .native. or a whole number of px"),
        ({"color_match": "bogus"}, "color_match: expected one of none, mean_std, histogram"),
    ]:
        with pytest.raises(UncropError, match=name):
            sampling.inpaint(sd_inpaint, photo, _hole(), SamplerSettings(**bad))
    plan = canvas.plan_margins(128, 96, right=16)
    for overlap in (None, 2.5, -5):  # None was a raw TypeError; 2.5 and -5 went through
        with pytest.raises(UncropError, match="overlap: expected a whole number of px"):
            sampling.outpaint(sd_inpaint, photo, plan, SamplerSettings(**FAST), overlap=overlap)
    # with nothing to generate, the settings are checked all the same
    with pytest.raises(UncropError, match="strength"):
        sampling.outpaint(
            sd_inpaint, photo, canvas.plan_margins(128, 96), SamplerSettings(strength=5)
        )


def test_a_numpy_seed_is_the_same_seed(sd_inpaint, photo):
    """A numpy integer passed the check, then overflowed in seed + 1000 i % 2**64."""
    two = photo.expand(2, -1, -1, -1)
    by_int = sampling.inpaint(sd_inpaint, two, _hole(), SamplerSettings(seed=5, **FAST))
    for seed in (np.int64(5), np.uint64(5), np.int32(5)):
        settings = SamplerSettings(seed=seed, **FAST)
        assert torch.equal(sampling.inpaint(sd_inpaint, two, _hole(), settings).image, by_int.image)


def test_values_are_checked_where_the_sampler_reads_them(sd_inpaint):
    image = torch.rand(1, 512, 512, 3)
    mask = torch.zeros(1, 512, 512)
    mask[:, 240:272, 240:272] = 1
    image[0, 0, 0] = 1.5  # far outside the window: comes back as it came
    image[0, 250, 236] = 1.25  # in the window but not the mask: also as it came
    result = sampling.inpaint(sd_inpaint, image, mask, SamplerSettings(**FAST))
    assert result.image[0, 0, 0, 0] == 1.5
    assert result.windows[0][0].x0 < 236 and result.image[0, 250, 236, 0] == 1.25
    image[0, 250, 230] = float("nan")  # inside the window: refused
    with pytest.raises(UncropError, match="image: contains NaN or infinite values"):
        sampling.inpaint(sd_inpaint, image, mask, SamplerSettings(**FAST))


def test_grey_image_is_painted_in_rgb_and_comes_back_grey(sd_inpaint, photo):
    grey = photo.mean(-1, keepdim=True)
    result = sampling.inpaint(sd_inpaint, grey, _hole(), SamplerSettings(**FAST))
    keep = _hole()[0] == 0
    assert result.image.shape == grey.shape
    assert torch.equal(result.image[0][keep], grey[0][keep])
    assert not torch.equal(result.image[0][~keep], grey[0][~keep])


@pytest.mark.parametrize("scheduler", ["euler_a", "dpmpp_2m", "ddim", "unipc"])
def test_schedulers_run(sd_inpaint, photo, scheduler):
    s = SamplerSettings(scheduler=scheduler, strength=0.6, prefill="smooth", **FAST)
    result = sampling.inpaint(sd_inpaint, photo, _hole(), s)
    assert torch.equal(result.image[0][_hole()[0] == 0], photo[0][_hole()[0] == 0])


# --- other families ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sd",
        "sdxl",
        "sdxl-inpaint",
        "sd-inpaint.safetensors",
        "sdxl.safetensors",
        "sd2-inpaint.safetensors",
        "sd2.safetensors",  # velocity prediction
    ],
)
def test_every_family_inpaints_and_keeps_unmasked_pixels(tree, photo, monkeypatch, name):
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))
    model = _load(tree, name)
    mask = _hole()
    s = SamplerSettings(resolution=64, color_match="mean_std", **FAST)
    result = sampling.inpaint(model, photo, mask, s)
    assert result.windows[0][0].sample_w == 64
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], photo[0][keep])
    assert not torch.equal(result.image, photo)


def test_a_controlnet_shrinking_by_another_factor_is_refused_by_name(tree, photo):
    """The original-layout fixture's hint encoder shrinks 8x (as real ones do); the tiny
    VAE 4x. It loads; sampling failed inside torch on mismatched sizes."""
    model = _load(tree, "sd", controlnet=tree["controlnet-ldm.safetensors"])
    with pytest.raises(
        UncropError, match=r"controlnet: tiny-cn-ldm\.safetensors shrinks the image 8x"
    ):
        sampling.inpaint(model, photo, _hole(), SamplerSettings(**FAST))


@pytest.mark.parametrize("controlnet", ["controlnet", "controlnet.safetensors"])
def test_controlnet_inpaint(tree, photo, controlnet, monkeypatch):
    model = _load(tree, "sd", controlnet=tree[controlnet])
    assert "ControlNet" in model.describe()
    # The ControlNet pipeline keeps the checkpoint's settings (no safety checker asked for).
    assert sampling._pipeline_for(model).config.requires_safety_checker is False
    mask = _hole()
    a = sampling.inpaint(model, photo, mask, SamplerSettings(controlnet_scale=1.0, **FAST)).image
    b = sampling.inpaint(model, photo, mask, SamplerSettings(controlnet_scale=0.0, **FAST)).image
    assert torch.equal(a[0][mask[0] == 0], photo[0][mask[0] == 0])
    assert not torch.equal(a, b)  # the ControlNet's scale changes the result
    # The ControlNet is told which pixels are hole as the pipeline's mask is (>= 0.5).
    calls = []
    real_call = type(sampling._pipeline_for(model)).__call__
    monkeypatch.setattr(
        type(sampling._pipeline_for(model)),
        "__call__",
        lambda pipe, **kw: calls.append(kw) or real_call(pipe, **kw),
    )
    sampling.inpaint(model, photo, mask * 0.5, SamplerSettings(**FAST))
    unknown = calls[0]["control_image"][:, :1] == -1
    assert int(unknown.sum()) == int((calls[0]["mask_image"] >= 0.5).sum()) > 0
    long = SamplerSettings(prompt=LONG, negative_prompt="blurry", **FAST)  # as embeddings
    assert torch.equal(
        sampling.inpaint(model, photo, mask, long).image[0][mask[0] == 0], photo[0][mask[0] == 0]
    )


# --- outpainting ------------------------------------------------------------------------


def test_outpaint_small_area_is_one_window(sd_inpaint, photo):
    plan = canvas.plan_margins(128, 96, right=16)
    settings = SamplerSettings(resolution=128, **FAST)  # the window fits 1.5x this
    result, mask = sampling.outpaint(sd_inpaint, photo, plan, settings)
    assert result.image.shape == (1, 96, 144, 3)
    assert len(result.windows[0]) == 1
    assert torch.equal(result.image[:, :, :128], photo)


def test_outpaint_large_area_uses_overlapping_windows_that_see_context(sd_inpaint, photo):
    plan = canvas.plan_target(128, 96, 320, 96, fit="pad", anchor="left")
    spy = UnetSpy(sd_inpaint.pipe.unet)
    try:
        result, mask = sampling.outpaint(
            sd_inpaint, photo, plan, SamplerSettings(**FAST), overlap=8
        )
    finally:
        spy.close()
    assert result.image.shape == (1, 96, 320, 3)
    windows = result.windows[0]
    assert len(windows) > 1 and all(w.sample_w == 64 for w in windows)
    assert all(size == (16, 16) for size in spy.sizes)  # native-size windows only
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], canvas.expand_canvas(photo, plan)[0][0][keep])
    new = result.image[0, :, 200:]
    assert new.std() > 0.01  # the far side was generated, not left as pre-fill


def test_outpaint_progress_ends_full_when_a_window_has_nothing_left(sd_inpaint, photo):
    image = canvas.resize_image(photo, 97, 131)
    plan = canvas.plan_margins(97, 131, left=200, right=200)
    hook = ProgressRecorder()
    result, _ = sampling.outpaint(
        sd_inpaint, image, plan, SamplerSettings(resolution=64, **FAST), progress=hook
    )
    planned = len(result.windows[0])
    sampled = sum(1 for done, _ in hook.updates if done % 2 == 1)  # 2 steps a window
    assert planned > sampled  # some window had nothing left to paint
    done = [d for d, _ in hook.updates]
    assert done == sorted(done) and hook.updates[-1] == (2 * planned, 2 * planned)


@pytest.mark.parametrize(("height", "resolution"), [(60, 64), (96, 100)])
def test_tiles_are_sampled_at_a_multiple_of_8(sd_inpaint, photo, height, resolution):
    """A tile as high as a 60 px frame, or a resolution of 100 (the API skips the
    widget's step of 64), went to the VAE at a side it cannot take, after loading."""
    image = canvas.resize_image(photo, 97, height)
    plan = canvas.plan_margins(97, height, left=200, right=200, multiple_of=1)
    settings = SamplerSettings(resolution=resolution, **FAST)
    result, mask = sampling.outpaint(sd_inpaint, image, plan, settings)
    windows = result.windows[0]
    assert len(windows) > 1
    assert all(w.sample_w % 8 == 0 and w.sample_h % 8 == 0 for w in windows)
    assert {w.height for w in windows} == {min(height, resolution)}  # the geometry as before
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], canvas.expand_canvas(image, plan)[0][0][keep])


class _RunsOutOfMemory:
    """Wraps a pipeline so its first ``failures`` calls raise CUDA's out-of-memory error."""

    def __init__(self, pipe, failures):
        self.pipe, self.failures, self.calls = pipe, failures, 0

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __setattr__(self, name, value):
        if name in ("pipe", "failures", "calls"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.pipe, name, value)

    def __call__(self, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:  # as the VAE's decode: after the noise was drawn
            torch.randn(8, generator=kwargs["generator"])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.pipe(**kwargs)


def test_two_loads_of_one_file_keep_their_own_vae_tiling(tree, photo):
    # Two Load Inpaint Model nodes on one file share the weights, not the setting: the
    # second used to switch the first one's tiling too.
    plain = _load(tree, "sd-inpaint", vae_tiling=False)
    tiled = _load(tree, "sd-inpaint", vae_tiling=True)
    assert tiled.pipe is plain.pipe
    assert not plain.vae_tiling and tiled.vae_tiling
    vae = plain.pipe.vae
    seen = []
    real_decode = vae.decode
    vae.decode = lambda *a, **k: seen.append(vae.use_tiling) or real_decode(*a, **k)
    try:
        for model in (plain, tiled, plain):
            sampling.inpaint(model, photo, _hole(), SamplerSettings(prompt="a cat", **FAST))
    finally:
        del vae.decode
        vae.disable_tiling()
    assert seen == [False, True, False]


def test_cpu_out_of_memory_is_recognised():
    """torch's CPU allocator says "not enough memory" or "can't allocate memory": it
    escaped as a raw RuntimeError, with no retry and no advice."""
    for text in (
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory",
        "[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate memory",
        "MPS backend out of memory",
    ):
        assert sampling._is_oom(RuntimeError(text))
    assert not sampling._is_oom(RuntimeError("The size of tensor a (64) must match"))


@pytest.mark.parametrize("prefill", ["none", "edge"])
def test_an_rgba_outpaint_is_opaque_where_the_model_painted(sd_inpaint, photo, prefill):
    """An inpainting model at strength 1 sees no pre-fill, so none was made: the new area
    kept the canvas's alpha of 0, and the saved file showed nothing the model painted."""
    image = torch.cat([photo, torch.ones_like(photo[..., :1])], dim=-1)
    plan = canvas.plan_margins(128, 96, right=16)
    settings = SamplerSettings(prefill=prefill, resolution=128, **FAST)
    result, mask = sampling.outpaint(sd_inpaint, image, plan, settings)
    assert torch.equal(result.image[:, :, :128], image)
    assert float(result.image[0, :, 128:, 3].min()) == 1.0


@pytest.mark.parametrize("level", [1.0, 0.5])
def test_an_opaque_rgba_image_masked_whole_stays_opaque(sd_inpaint, photo, level):
    """With no known pixel the alpha under the painted pixels was filled alone, as a grey
    image of one channel: 0.5, and 0.75 once blended at a mask of 0.5 everywhere."""
    image = torch.cat([photo, torch.ones_like(photo[..., :1])], dim=-1)
    mask = torch.full(photo.shape[:3], level)
    result = sampling.inpaint(sd_inpaint, image, mask, SamplerSettings(resolution=128, **FAST))
    assert float(result.image[..., 3].min()) == 1.0


def test_an_rgba_transparent_hole_is_opaque_through_the_seam_feather(sd_inpaint, photo):
    """The feather blended the painted pixels with the hole's hidden colour at alpha 0: a
    partly transparent ring. Inside the hole they are now the painted ones, opaque."""
    image = torch.cat([photo, torch.ones_like(photo[..., :1])], dim=-1)
    hole = _hole()
    image[hole.bool()] = 0.0  # erased to transparent black
    # strength under 1: the model sees the pre-fill, which replaces the hidden colour
    settings = SamplerSettings(resolution=128, mask_blur=6.0, strength=0.9, **FAST)
    result = sampling.inpaint(sd_inpaint, image, hole, settings)
    assert torch.equal(result.image[~hole.bool()], image[~hole.bool()])
    assert float(result.image[0, ..., 3][hole[0].bool()].min()) == 1.0
    # the hidden colour shows nowhere, not even where the feather ramps (< 1)
    assert bool((sampling.seam_weight(hole, 6.0)[0][hole[0].bool()] < 1).any())
    image[hole.bool()] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert torch.equal(sampling.inpaint(sd_inpaint, image, hole, settings).image, result.image)


def test_the_colour_hidden_under_transparent_context_never_reaches_the_model(sd_inpaint, photo):
    """An erased patch (alpha 0) beside the hole, in the model's context: the model was
    given its hidden colour, so the painted hole changed with it (black or white). It is
    now given the colours around the patch, and the hidden colour changes nothing."""
    image = torch.cat([photo, torch.ones_like(photo[..., :1])], dim=-1)
    image[:, 30:66, 90:110] = 0.0  # erased to transparent black
    mask = sampling.feather(_hole(), 4.0)
    settings = SamplerSettings(resolution=128, **FAST)
    result = sampling.inpaint(sd_inpaint, image, mask, settings)
    keep = mask[0] == 0
    assert torch.equal(result.image[0][keep], image[0][keep])
    assert float(result.image[0, ..., 3][mask[0] >= 0.5].min()) == 1.0
    image[:, 30:66, 90:110, :3] = 1.0  # the hidden colour white instead
    again = sampling.inpaint(sd_inpaint, image, mask, settings)
    assert torch.equal(again.image[0][~keep], result.image[0][~keep])


def test_hidden_colours_come_from_around_never_from_the_hole():
    """What the model is given for transparent pixels: the nearest seen colour outside
    the hole (the red object in the hole is being removed; taken from there, the edge
    pre-fill copied it back in). A faint pixel keeps its colour; with nothing seen,
    grey."""
    image = torch.zeros(1, 32, 32, 4)
    image[:, :, 16:] = torch.tensor([0.0, 0.8, 0.0, 1.0])  # opaque green
    image[:, 8:24, 16:24] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # red, to be removed
    image[:, 0, 0] = torch.tensor([0.0, 0.0, 1.0, 0.3])  # faint blue
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 16:24] = 1
    shown = sampling._without_hidden_colours(image, mask)
    assert torch.equal(shown[..., 3], image[..., 3])
    hidden = image[0, ..., 3] == 0
    assert torch.equal(shown[0, 16, 15, :3], torch.tensor([0.0, 0.8, 0.0]))
    assert not bool((shown[0][hidden][:, 0] > 0).any()), "no red from the hole"
    assert torch.equal(shown[0][~hidden], image[0][~hidden])
    clear = torch.zeros(1, 8, 8, 4)
    assert bool(
        (sampling._without_hidden_colours(clear, torch.zeros(1, 8, 8))[..., :3] == 0.5).all()
    )


def test_an_outpaint_with_nothing_to_add_still_gives_each_image_its_caption():
    from uncrop.core.caption import Captions

    images = torch.rand(2, 32, 32, 3)
    plan = canvas.plan_margins(32, 32)
    captions = Captions(["a red tree", "a blue sky"])
    result, _ = sampling.outpaint(None, images, plan, SamplerSettings(prompt=captions))
    assert result.prompts == ["a red tree", "a blue sky"]
    with pytest.raises(UncropError, match="prompt: 2 captions"):
        sampling.outpaint(None, torch.rand(3, 32, 32, 3), plan, SamplerSettings(prompt=captions))


@pytest.mark.parametrize("failures", [1, 2])
def test_out_of_memory_retries_with_vae_tiling_then_says_what_to_do(
    tree, photo, monkeypatch, failures
):
    model = _load(tree, "sd-inpaint", vae_tiling=False)
    real = sampling._pipeline_for
    wrapped = []
    monkeypatch.setattr(
        sampling,
        "_pipeline_for",
        lambda m: wrapped.append(_RunsOutOfMemory(real(m), failures)) or wrapped[-1],
    )
    settings = SamplerSettings(prompt="a cat", **FAST)
    try:
        if failures == 1:
            result = sampling.inpaint(model, photo, _hole(), settings)
            assert wrapped[0].calls == 2
            # The node's setting is back for the next run (it stayed on, and a later
            # run's pixels changed with the widget still off).
            assert not model.vae_tiling
            keep = _hole()[0] == 0
            assert torch.equal(result.image[0][keep], photo[0][keep])
            monkeypatch.setattr(sampling, "_pipeline_for", real)
            # the retry starts from the seed's first noise: as tiling on from the start
            model.set_vae_tiling(True)
            assert torch.equal(
                result.image, sampling.inpaint(model, photo, _hole(), settings).image
            )
        else:
            with pytest.raises(
                UncropError, match="out of memory .* even with VAE tiling; free memory"
            ) as raised:
                sampling.inpaint(model, photo, _hole(), settings)
            assert wrapped[0].calls == 2 and not model.vae_tiling
            # torch's own type as well: ComfyUI unloads its models on one
            assert isinstance(raised.value, torch.cuda.OutOfMemoryError)
    finally:
        model.set_vae_tiling(False)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_mask_softer_than_the_hole_threshold_leaves_the_input_alone(tree, photo, channels):
    # No pixel reaches 0.5, so the pre-fill has no hole: the sampler must still work on
    # its own copy, keep the unmasked pixels and blend the soft area at its strength.
    model = _load(tree, "sd")
    image = photo[..., :channels].contiguous()
    before = image.clone()
    soft = _hole() * 0.4
    result = sampling.inpaint(model, image, soft, SamplerSettings(prompt="a cat", **FAST))
    assert torch.equal(image, before)
    keep = soft[0] == 0
    assert torch.equal(result.image[0][keep], before[0][keep])
    changed = (result.image - before)[0][~keep].abs().max()
    assert 0 < changed <= 0.4 + 1e-6  # at most 0.4 of the way to any generated value


@pytest.mark.parametrize(
    "name,strength,expect_fill",
    [("sd-inpaint", 1.0, False), ("sd-inpaint", 0.7, True), ("sd", 1.0, True)],
)
def test_prefill_runs_only_where_the_model_can_see_it(
    tree, photo, monkeypatch, name, strength, expect_fill
):
    model = _load(tree, name)
    holes = []
    real_fill = sampling.fill
    monkeypatch.setattr(
        sampling,
        "fill",
        lambda img, hole, *a, **k: holes.append(hole) or real_fill(img, hole, *a, **k),
    )
    soft = _hole() * 0.9
    soft[:, 28:30, 40:72] = 0.3  # a soft edge the model treats as known context
    sampling.inpaint(
        model,
        photo,
        soft,
        SamplerSettings(prompt="a cat", strength=strength, prefill="noise", **FAST),
    )
    assert bool(holes) == expect_fill
    if holes:
        # Only mask >= 0.5 is replaced (the hole is in the sampled region's coordinates).
        assert int(holes[0].sum()) == int((soft >= 0.5).sum()) == 24 * 32


def test_prompt_summary_lists_each_prompt_once_and_skips_empty_ones():
    # An image of a batch with nothing to paint has no prompt: no dangling separator.
    assert sampling.prompt_summary(["a dog", "", "a dog", "the sea"]) == "a dog | the sea"
    assert sampling.prompt_summary(["", ""]) == ""


# --- blending and tiling, with a stand-in for the model's output --------------------------


class FakePipe:
    """Paints every window ``value`` and records what the pipeline was given."""

    def __init__(self, value):
        self.value, self.calls, self.scheduler = value, [], None

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return type("Out", (), {"images": torch.full_like(kwargs["image"], self.value)})


def _fake(monkeypatch, value):
    pipe = FakePipe(value)
    monkeypatch.setattr(sampling, "_pipeline_for", lambda model: pipe)
    return pipe


def test_a_thin_scratch_reaches_the_pipeline_in_a_shrunk_window(sd_inpaint, monkeypatch):
    """A 400 px window sampled at 64: averaged down, a 2 px scratch fell under the
    pipeline's 0.5 and was not painted at all."""
    pipe = _fake(monkeypatch, 1.0)
    mask = torch.zeros(1, 400, 400)
    mask[:, 50:350, 201:203] = 1
    out = sampling.inpaint(sd_inpaint, torch.zeros(1, 400, 400, 3), mask, SamplerSettings(**FAST))
    assert float(pipe.calls[0]["mask_image"].max()) == 1.0
    assert pipe.calls[0]["width"] == 64
    assert float(out.image[0, 200, 201:203].min()) > 0.9


def test_mask_blur_fills_thin_holes_whole_and_feathers_big_ones(sd_inpaint, monkeypatch):
    """Feathered from both sides, a 1 px dot took 9% of the generated image and a 2 px
    line half: each hole's deepest pixel now takes all of it."""
    _fake(monkeypatch, 1.0)
    mask = torch.zeros(1, 96, 128)
    mask[:, 10, 10] = 1  # a dot
    mask[:, 20:80, 30:32] = 1  # a 2 px line
    mask[:, 30:70, 60:110] = 1  # a block
    mask[:, 48:50, 110:126] = 1  # a 2 px scratch joined to it
    settings = SamplerSettings(mask_blur=4, **FAST)
    out = sampling.inpaint(sd_inpaint, torch.zeros(1, 96, 128, 3), mask, settings).image[0, ..., 0]
    assert float(out[10, 10]) == pytest.approx(1.0)
    assert float(out[30:70, 30:32].min()) == pytest.approx(1.0)  # the ends ramp along it
    assert float(out[50, 85]) == pytest.approx(1.0) and float(out[50, 60]) < 0.8  # its rim ramps
    assert float(out[48:50, 118:120].min()) == pytest.approx(1.0)  # not held down by the block
    assert float(out[mask[0] == 0].max()) == 0.0


@pytest.mark.parametrize(("overlap", "blur"), [(0, 4), (16, 16)])
def test_outpaint_new_area_takes_all_of_the_generated_image(sd_inpaint, monkeypatch, overlap, blur):
    """The new area has nothing under it: feathered inside the mask, its first columns
    mixed in the black canvas (35% darker at overlap 0)."""
    _fake(monkeypatch, 0.8)
    image = torch.full((1, 64, 96, 3), 0.8)
    plan = canvas.plan_margins(96, 64, right=40)
    settings = SamplerSettings(mask_blur=blur, **FAST)
    result, _ = sampling.outpaint(sd_inpaint, image, plan, settings, overlap=overlap)
    assert torch.allclose(result.image, torch.full_like(result.image, 0.8), atol=1e-6)


@pytest.mark.parametrize("side", ["left", "top"])
def test_tiles_start_beside_the_photo_with_context(sd_inpaint, monkeypatch, side):
    """Tiles sit on real context and run outwards from the photo on every side: on the
    left and top, a tile with nothing known ran first."""
    seen = []

    def run_window(model, pipe, image, mask, window, *rest):
        known = float((mask[0][window.slices] == 0).float().mean())
        seen.append((window.x0 if side == "left" else window.y0, known))
        return torch.full((1, window.height, window.width, 3), 0.5)

    monkeypatch.setattr(sampling, "_run_window", run_window)
    plan = canvas.plan_margins(96, 96, **{side: 200})
    settings = SamplerSettings(resolution=64, **FAST)
    sampling.outpaint(sd_inpaint, torch.rand(1, 96, 96, 3), plan, settings)
    starts = [start for start, _ in seen]
    assert len(seen) > 2 and starts == sorted(starts, reverse=True)
    assert seen[0][1] >= 0.25  # a quarter window of the photo as context


def test_each_tile_draws_its_own_noise(sd_inpaint, monkeypatch):
    # One seed for all tiles repeats the same noise across a wide outpaint.
    seeds = []

    def run_window(model, pipe, image, mask, window, prompt, settings, seed, reporter):
        seeds.append(seed)
        return torch.full((1, window.height, window.width, 3), 0.5)

    monkeypatch.setattr(sampling, "_run_window", run_window)
    plan = canvas.plan_margins(96, 96, left=200)
    settings = SamplerSettings(resolution=64, seed=7, **FAST)
    sampling.outpaint(sd_inpaint, torch.rand(1, 96, 96, 3), plan, settings)
    assert len(seeds) > 2 and sorted(seeds) == list(range(7, 7 + len(seeds)))


def test_nothing_to_paint_loads_nothing(sd_inpaint, photo):
    captioner, moved = FakeCaptioner(), []
    result = sampling.inpaint(
        sd_inpaint, photo, torch.zeros(1, 96, 128), SamplerSettings(**FAST),
        captioner=captioner, prepare_model=lambda: moved.append(1),
    )  # fmt: skip
    assert torch.equal(result.image, photo)
    assert captioner.calls == [] and moved == []
