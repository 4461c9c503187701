"""core/caption.py with tiny random-weight BLIP and GIT models loaded from disk."""

from __future__ import annotations

import gc
import shutil
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tiny_captioners
import torch
from conftest import ProgressRecorder

from uncrop.core import caption as cap
from uncrop.core.errors import UncropError

FAMILIES = ["blip", "git"]
RED = (1.0, 0.0, 0.0)
FAST = cap.CaptionOptions(max_length=8, beams=2)
"""Short captions keep the tests quick: random weights never stop before the limit."""


@pytest.fixture(scope="session")
def models() -> Path:
    return tiny_captioners.models_dir()


@pytest.fixture(params=FAMILIES)
def captioner(request, models) -> cap.Captioner:
    return cap.Captioner(
        models / "captioners" / f"tiny-{request.param}", device=torch.device("cpu"), options=FAST
    )


class Spy:
    """Wraps a processor and keeps the pictures handed to it, as uint8 arrays."""

    def __init__(self, processor):
        self.processor = processor
        self.seen: list[np.ndarray] = []

    def __call__(self, *args, images=None, **kwargs):
        self.seen.append(np.asarray(images))
        return self.processor(*args, images=images, **kwargs)

    def __getattr__(self, name):
        return getattr(self.processor, name)


@pytest.fixture
def spy(captioner, monkeypatch) -> Spy:
    loaded = captioner.load()
    watcher = Spy(loaded.processor)
    monkeypatch.setattr(loaded, "processor", watcher)
    return watcher


def _scene(astronaut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut with its right 40% painted pure red, and a mask over that red."""
    image = astronaut[:, ::4, ::4].clone()  # 128x128
    mask = torch.zeros(image.shape[:3])
    mask[:, :, 77:] = 1
    image[:, :, 77:] = torch.tensor(RED)
    return image, mask


def _red_pixels(picture: np.ndarray) -> int:
    return int(((picture[..., 0] > 250) & (picture[..., 1] < 5) & (picture[..., 2] < 5)).sum())


def test_caption_is_a_deterministic_string(captioner, astronaut):
    image = astronaut[:, ::4, ::4]
    first = captioner.caption(image)
    cap.release_captioners()
    again = cap.Captioner(captioner.folder, device=torch.device("cpu"), options=FAST)
    assert again.caption(image) == first
    assert isinstance(first, list) and len(first) == 1
    assert isinstance(first[0], str) and first[0].strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_device_captions_in_its_own_dtype(models, astronaut, device, family):
    """What a user's machine runs: float16 on a GPU, float32 on the CPU; the image can
    live on either device."""
    captioner = cap.Captioner(models / "captioners" / f"tiny-{family}", device=device, options=FAST)
    assert captioner.dtype == (torch.float16 if device.type == "cuda" else torch.float32)
    image = astronaut[:, ::4, ::4].to(device)
    first = captioner.caption(image)
    assert first == captioner.caption(image)
    assert len(first) == 1 and first[0].strip()
    assert next(captioner.load().model.parameters()).device.type == device.type


def test_one_caption_per_image_and_progress(captioner, astronaut, coffee):
    batch = torch.cat([astronaut[:, :200, :300], coffee[:, :200, :300]])
    hook = ProgressRecorder()
    captions = captioner.caption(batch, progress=hook)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)
    assert hook.updates == [(1, 2), (2, 2)]


def test_visible_region_hides_the_hole_from_the_model(captioner, spy, astronaut):
    image, mask = _scene(astronaut)
    captioner.caption(image)
    captioner.caption(image, mask)
    whole, visible = spy.seen
    assert whole.shape == (128, 128, 3)
    assert _red_pixels(whole) == 128 * 51
    assert _red_pixels(visible) == 0
    if captioner.family == "git":  # padded to the square its processor crops to
        assert visible.shape == (128, 128, 3)
        visible = visible[:, 25:102]
    assert visible.shape == (128, 77, 3), "cropped to what the mask leaves visible"
    expected = (image[0, :, :77].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(visible, expected), "visible pixels are handed over unchanged"


def test_hole_inside_the_visible_box_is_replaced(captioner, spy, astronaut):
    image = astronaut[:, ::4, ::4].clone()
    mask = torch.zeros(image.shape[:3])
    mask[:, 40:80, 40:80] = 1
    image[:, 40:80, 40:80] = torch.tensor(RED)
    captioner.caption(image, mask)
    (seen,) = spy.seen
    assert seen.shape == (128, 128, 3)
    assert _red_pixels(seen) == 0
    border = (image[0, 39, 60].numpy() * 255).round()
    assert np.abs(seen[40, 60].astype(float) - border).max() < 40, "filled from its border"


def test_region_whole_shows_everything_even_with_a_mask(captioner, spy, astronaut):
    image, mask = _scene(astronaut)
    captioner.caption(image, mask, options=replace(FAST, region="whole"))
    assert _red_pixels(spy.seen[0]) == 128 * 51


@pytest.mark.parametrize("region", ["visible", "whole"])
def test_transparent_pixels_are_hidden_as_the_hole_is(astronaut, region):
    """A cut-out on transparent black: the black it hides is not shown to the model, nor
    is a faint fringe (under half opaque, as a mask hides from 0.5)."""
    image, _ = _scene(astronaut)
    rgba = torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)
    rgba[:, :, 77:] = 0.0  # transparent, hidden colour black
    rgba[:, :, 74:77, 3] = 0.3  # a faint fringe: hidden
    rgba[:, :, 70:74, 3] = 0.6  # more opaque than not: seen as it is
    (seen,) = cap.images_for_model(rgba, torch.zeros(1, 128, 128), region)
    assert seen.size == (74, 128)  # cropped to the pixels at least half opaque
    expected = (image[0, :, :74].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(seen), expected)
    rgba[:, 40:80, 20:50] = 0.0  # transparent inside the box: filled from around it
    (seen,) = cap.images_for_model(rgba, None)
    assert seen.size == (74, 128)
    assert int((np.asarray(seen)[40:80, 20:50] < 8).all(-1).sum()) == 0  # no black


def test_a_translucent_image_is_seen_as_opaque_as_its_most_opaque_pixel(astronaut):
    """A ghost at alpha 0.3 is all there is to describe: shown in its colours."""
    image, _ = _scene(astronaut)
    rgba = torch.cat([image, torch.full_like(image[..., :1], 0.3)], dim=-1)
    rgba[:, :, 77:, 3] = 0.1  # less than half as opaque: hidden
    (seen,) = cap.images_for_model(rgba, None)
    expected = (image[0, :, :77].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(seen), expected)
    rgba[..., 3] = 0.5 / 255  # under one 8-bit level everywhere: nothing to see
    assert cap.images_for_model(rgba, None) == [None]


def test_a_wide_strip_is_padded_for_a_processor_that_crops_the_middle_square(
    captioner, spy, astronaut
):
    """GIT's processor crops the middle square: the 128x32 strip the mask leaves is
    padded to a square (the padding filled from the strip), so all of it is seen.
    BLIP's resizes the whole picture and is handed the strip as it is."""
    image = astronaut[:, ::4, ::4]
    mask = torch.ones(1, 128, 128)
    mask[:, 96:] = 0
    captioner.caption(image, mask)
    (seen,) = spy.seen
    strip = (image[0, 96:].numpy() * 255).round().astype(np.uint8)
    if captioner.family == "git":
        assert seen.shape == (128, 128, 3)
        assert np.array_equal(seen[48:80], strip)
        below = seen[80:].astype(float).mean(axis=(0, 1))
        assert np.abs(below - strip[-1].astype(float).mean(axis=0)).max() < 40, "no black"
    else:
        assert np.array_equal(seen, strip)


def test_each_picture_is_made_after_the_cancel_check(captioner, astronaut, monkeypatch):
    """Cancelling a batch stops before the next picture is prepared (16 4K frames were
    all prepared, 16.7 s, before the first check)."""
    made = []
    original = cap.picture_for_model
    monkeypatch.setattr(cap, "picture_for_model", lambda *a: made.append(1) or original(*a))

    with pytest.raises(KeyboardInterrupt):
        captioner.caption(
            astronaut[:, ::8, ::8].expand(3, -1, -1, -1), progress=ProgressRecorder(stop=2)
        )
    assert len(made) == 1


def test_captions_survive_copies_and_pickles():
    """ComfyUI's history deep-copies outputs: a copy rebuilt a Captions from its text,
    one character a line."""
    import copy
    import pickle

    text = cap.Captions(["a red tree", "a blue sky"])
    for again in (copy.copy(text), copy.deepcopy(text), pickle.loads(pickle.dumps(text))):
        assert again == "a red tree\na blue sky" and again.each == ("a red tree", "a blue sky")


def test_soft_mask_below_half_counts_as_visible(astronaut):
    image, mask = _scene(astronaut)
    (full,) = cap.images_for_model(image, mask * 0.4)
    (cropped,) = cap.images_for_model(image, mask * 0.6)
    assert full.size == (128, 128) and cropped.size == (77, 128)


def test_fully_masked_image_gets_an_empty_caption(captioner, astronaut):
    image = astronaut[:, ::4, ::4].expand(2, -1, -1, -1)
    mask = torch.zeros(2, 128, 128)
    mask[1] = 1
    captions = captioner.caption(image, mask)
    assert captions[0] and captions[1] == ""


def test_template_and_prefix_are_applied(captioner, astronaut):
    image = astronaut[:, ::4, ::4]
    plain = captioner.caption(image)[0]
    templated = captioner.with_options(template="{caption}, detailed photo").caption(image)[0]
    assert templated == f"{plain}, detailed photo"
    opts = cap.CaptionOptions(prefix="a photo of", template="{caption}", max_length=8)
    prefixed = captioner.caption(image, options=opts)[0]
    assert prefixed.startswith("a photo of ") and len(prefixed) > len("a photo of ")
    assert prefixed != plain


def test_a_template_with_line_breaks_gives_one_line_a_caption(captioner, astronaut):
    # A batch's text is a line per image: a template's line breaks would add lines.
    image = astronaut[:, ::4, ::4].expand(2, -1, -1, -1)
    plain = captioner.caption(image[:1])[0]
    captions = captioner.with_options(template="{caption},\n  detailed\tphoto\n").caption(image)
    assert list(captions) == [f"{plain}, detailed photo"] * 2
    text = cap.Captions(list(captions))
    assert text.split("\n") == list(text.each)


def test_more_tokens_make_a_longer_caption(captioner, astronaut):
    image = astronaut[:, ::4, ::4]
    short = captioner.caption(image, options=cap.CaptionOptions(max_length=3, beams=1))[0]
    longer = captioner.caption(image, options=cap.CaptionOptions(max_length=12, beams=1))[0]
    assert len(short.split()) <= 3 < len(longer.split())


def test_caption_stops_at_the_decoders_last_position(captioner, astronaut):
    # The tiny decoders have 64 positions (real BLIP 512): more tokens than fit raised
    # IndexError from the position embedding; a prefix that fills them is refused.
    image = astronaut[:, ::8, ::8]
    loaded = captioner.load()
    config = getattr(loaded.model.config, "text_config", None) or loaded.model.config
    positions = config.max_position_embeddings
    long = captioner.caption(image, options=cap.CaptionOptions(max_length=512, beams=1))[0]
    assert 0 < len(long.split()) <= positions
    with pytest.raises(UncropError, match=f"prefix: .* {positions} text positions"):
        captioner.caption(image, options=cap.CaptionOptions(prefix="sea " * 2 * positions))


def test_a_prefix_may_fill_all_but_the_last_position(models, astronaut):
    """BLIP's processor ends the prefix with [SEP], which generate drops: with
    [CLS] and 62 words the tiny decoder's 64 positions leave room for one token."""
    captioner = cap.Captioner(models / "captioners" / "tiny-blip", device=torch.device("cpu"))
    image = astronaut[:, ::8, ::8]
    opts = cap.CaptionOptions(prefix="sea " * 62, max_length=8, beams=1)
    (text,) = captioner.caption(image, options=opts)
    assert text.startswith("sea " * 61 + "sea") and len(text.split()) == 63
    with pytest.raises(UncropError, match="prefix: 64 tokens"):
        captioner.caption(image, options=replace(opts, prefix="sea " * 63))


@pytest.mark.parametrize(
    "rule, rooms",
    [("text", (63, 40, 17)), ("after_image", (47, 24, 1)), ("doubled", (24, 1, None))],
)
def test_git_room_follows_how_transformers_numbers_its_positions(models, monkeypatch, rule, rooms):
    # The tiny GIT has 64 positions and 4x4 patches + 1 image tokens. transformers 5.0
    # numbers the n-th written token n + 17: the 48th raised IndexError there (a
    # device-side assert on a GPU); 5.1 to 5.17 number it 2n + 17: the 25th raised.
    # Measured with 5.0.0 and 5.17.
    monkeypatch.setattr(cap, "_git_positions", lambda: rule)
    captioner = cap.Captioner(models / "captioners" / "tiny-git", device=torch.device("cpu"))
    model = captioner.load().model
    assert cap._git_image_tokens(model.config) == 17
    for used, room in zip((1, 24, 47), rooms, strict=True):
        if room is None:
            with pytest.raises(UncropError, match=f"prefix: {used} tokens"):
                cap._token_room(model, "git", used)
        else:
            assert cap._token_room(model, "git", used) == room


def test_git_caption_keeps_to_its_room(models, monkeypatch, astronaut):
    # The smallest room (5.1 to 5.17's), which is safe under every release's numbering.
    monkeypatch.setattr(cap, "_git_positions", lambda: "doubled")
    captioner = cap.Captioner(models / "captioners" / "tiny-git", device=torch.device("cpu"))
    long = captioner.caption(
        astronaut[:, ::8, ::8], options=cap.CaptionOptions(max_length=512, beams=1)
    )[0]
    assert 0 < len(long.split()) <= 24


@pytest.mark.parametrize(
    "change, message",
    [
        ({"template": "no placeholder"}, "{caption}"),
        ({"region": "hole"}, "region"),
        ({"beams": 0}, "beams"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": float("nan")}, "max_length: expected 1 to 512 tokens, got nan"),  # raw
        ({"beams": float("inf")}, "beams: expected 1 to 16, got inf"),  # int() errors before
        ({"max_length": 8.5}, "max_length: expected 1 to 512 tokens, got 8.5"),  # cut to 8
    ],
)
def test_bad_options_are_refused(change, message):
    with pytest.raises(UncropError, match=message.replace("{", r"\{").replace("}", r"\}")):
        cap.CaptionOptions(**change).checked()


def test_loaded_once_and_released(captioner, monkeypatch):
    first = captioner.load()
    assert cap.Captioner(captioner.folder, device=torch.device("cpu")).load() is first
    captioner.release()
    assert captioner.load() is not first


def test_a_captioner_model_lives_only_as_long_as_a_captioner_holds_it(captioner):
    """In ComfyUI the loader's output holds it: "Free model and node cache" drops that,
    and the weights must go with it (the pack kept the last two in RAM)."""
    folder = captioner.folder
    cap.release_captioners()
    one = cap.Captioner(folder, device=torch.device("cpu"), options=FAST)
    copy = one.with_options(beams=2)
    loaded = copy.load()
    assert one.load() is loaded  # shared while held
    weights = weakref.ref(loaded.model)
    del loaded, one
    gc.collect()
    assert weights() is not None  # `copy` still holds it
    del copy
    gc.collect()
    assert weights() is None


def test_loads_from_disk_only_and_safetensors_only(captioner, monkeypatch):
    import transformers

    calls = []
    cls = getattr(transformers, cap.FAMILIES[captioner.family][1])
    original = cls.from_pretrained.__func__

    def recording(klass, *args, **kwargs):
        calls.append(kwargs)
        return original(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    captioner.release()
    captioner.load()
    assert calls and calls[0]["local_files_only"] is True
    assert calls[0]["use_safetensors"] is True and calls[0]["trust_remote_code"] is False


def test_family_is_read_from_config(models):
    assert cap.check_model_folder(models / "captioners" / "tiny-blip") == "blip"
    assert cap.check_model_folder(models / "captioners" / "tiny-git") == "git"


@pytest.fixture
def broken(models, tmp_path) -> Path:
    folder = tmp_path / "captioners" / "broken"
    shutil.copytree(models / "captioners" / "tiny-blip", folder)
    return folder


def _refused(folder: Path, *expected: str) -> str:
    with pytest.raises(UncropError) as err:
        cap.Captioner(folder, device=torch.device("cpu")).caption(torch.rand(1, 16, 16, 3))
    text = str(err.value)
    for part in expected:
        assert part in text, f"{part!r} not in {text!r}"
    return text


def test_missing_folder_says_where_and_what(tmp_path):
    _refused(
        tmp_path / "captioners" / "blip-large",
        str(tmp_path / "captioners" / "blip-large"),
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
    )


def test_missing_config(broken):
    (broken / "config.json").unlink()
    _refused(broken, str(broken), "no config.json", "model.safetensors")


def test_unsupported_family(broken):
    (broken / "config.json").write_text('{"model_type": "llava"}')
    _refused(broken, str(broken), "'llava'", "BLIP", "GIT")


def test_corrupt_config(broken):
    (broken / "config.json").write_text("{not json")
    _refused(broken, str(broken), "config.json", "not readable")


def test_pickle_only_weights_are_refused(broken):
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    _refused(broken, str(broken), "pytorch_model.bin", "safetensors only", "pickle")


def test_missing_tokenizer(broken):
    (broken / "tokenizer.json").unlink()
    _refused(broken, str(broken), "missing tokenizer.json")


def test_missing_image_processor(broken):
    (broken / "processor_config.json").unlink()
    _refused(broken, str(broken), "missing preprocessor_config.json")


def test_corrupt_weights(broken):
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    _refused(broken, str(broken), "could not be loaded as BLIP", "corrupt", "model.safetensors")


def test_dtype_follows_the_device():
    assert cap.default_dtype(torch.device("cuda")) == torch.float16
    assert cap.default_dtype(torch.device("cpu")) == torch.float32


def test_sampler_sends_the_caption_to_the_text_encoder(models, tmp_path, astronaut):
    """Empty prompt + captioner: the caption's tokens are what the text encoder encodes."""
    import tiny_models

    from uncrop.core import models as diffusion
    from uncrop.core import sampling

    folder = tiny_models.save_folder(tiny_models.tiny_sd(tmp_path), tmp_path / "sd-inpaint")
    model = diffusion.load_model(folder)
    captioner = cap.Captioner(
        models / "captioners" / "tiny-blip",
        device=torch.device("cpu"),
        options=cap.CaptionOptions(max_length=6, beams=1, template="{caption}, detailed photo"),
    )
    image = astronaut[:, ::8, ::8]  # 64x64
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    expected = captioner.caption(image, mask)
    encoded: list[torch.Tensor] = []
    hook = model.pipe.text_encoder.register_forward_hook(
        lambda module, args, kwargs, out: encoded.append(
            (args[0] if args else kwargs["input_ids"]).clone()
        ),
        with_kwargs=True,
    )
    try:
        result = sampling.inpaint(
            model,
            image,
            mask,
            sampling.SamplerSettings(prompt="", steps=1, guidance=0.0),
            captioner=captioner,
        )
    finally:
        hook.remove()
    assert result.prompts == expected and expected[0].endswith(", detailed photo")
    tokens = model.pipe.tokenizer(
        expected[0], padding="max_length", truncation=True, return_tensors="pt"
    ).input_ids
    assert encoded, "the text encoder ran"
    assert any(torch.equal(ids.cpu(), tokens) for ids in encoded), "caption not encoded"


def test_a_big_picture_is_shrunk_without_hole_colour_leaking(brick):
    """Longer than SHOWN_SIDE: shrunk first, each pixel the mean of the seen pixels it
    covers, so the red hole reaches neither the shrunk edge nor the blur filling it."""
    image = torch.nn.functional.interpolate(
        brick.movedim(-1, 1), size=(700, 1024), mode="bilinear"
    ).movedim(1, -1)
    mask = torch.zeros(1, 700, 1024)
    mask[:, 201:433, 303:611] = 1
    image[:, 201:433, 303:611] = torch.tensor(RED)
    (picture,) = cap.images_for_model(image, mask)
    assert picture.size == (cap.SHOWN_SIDE, 525)
    arr = np.asarray(picture).astype(int)
    assert (arr[..., 0] - arr[..., 1:].max(axis=-1)).max() < 40, "no red anywhere"
    shrunk = torch.nn.functional.interpolate(
        image[:, :200].movedim(-1, 1), size=(150, 768), mode="area"
    )[0].movedim(0, -1)
    assert np.abs(arr[:150] - (shrunk.numpy() * 255).round()).max() <= 1, "seen rows as they are"


def test_push_pull_fill_takes_the_surrounding_colour():
    image = torch.zeros(1, 40, 60, 3)
    image[:, :, :30] = torch.tensor([0.2, 0.4, 0.6])
    image[:, :, 30:] = torch.tensor([0.2, 0.4, 0.6])
    hole = torch.zeros(1, 40, 60, dtype=torch.bool)
    hole[:, 10:30, 20:45] = True
    image[hole] = torch.tensor([1.0, 0.0, 0.0])
    out = cap.push_pull_fill(image, (~hole).float())
    assert torch.allclose(out, torch.tensor([0.2, 0.4, 0.6]).expand_as(out), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_folder_without_a_whole_captioner_is_refused(models, tmp_path, family):
    """A BLIP retrieval model (model_type blip too), or weights without the text decoder:
    transformers filled the decoder in at random, a new caption on every load."""
    import json

    from safetensors.torch import load_file, save_file

    folder = tmp_path / family
    shutil.copytree(models / "captioners" / f"tiny-{family}", folder)
    config = json.loads((folder / "config.json").read_text())
    kept = config.get("architectures")
    config["architectures"] = ["BlipForImageTextRetrieval"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UncropError, match="holds a BlipForImageTextRetrieval, not a"):
        cap.check_model_folder(folder)
    config["architectures"] = kept
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(str(folder / "model.safetensors"))
    decoder = "text_decoder." if family == "blip" else "output."
    save_file(
        {k: v for k, v in weights.items() if not k.startswith(decoder)},
        str(folder / "model.safetensors"),
    )
    cap.release_captioners()
    with pytest.raises(UncropError, match=r"its weights lack \d+ of the .* captioner's param"):
        cap.Captioner(folder, device=torch.device("cpu"), options=FAST).caption(
            torch.rand(1, 32, 32, 3)
        )


def test_a_folder_given_by_path_is_told_what_it_lacks_not_where_captioners_go(tmp_path):
    # Given by path (the CLI's --captioner), the help named ComfyUI/models/captioners, or
    # for a missing relative folder "a sub-folder of '.'".
    (tmp_path / "empty").mkdir()
    for folder, why in ((tmp_path / "empty", "has no config.json"), (Path("fm"), "does not exist")):
        with pytest.raises(UncropError, match=why) as info:
            cap.check_model_folder(folder)
        assert "A captioner's folder holds config.json" in str(info.value)
        assert "sub-folder" not in str(info.value)
