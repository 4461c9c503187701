"""``uncrop caption`` and ``--captioner`` on inpaint/outpaint, with tiny captioners."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_captioners
import torch
from PIL import Image

from uncrop import cli

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def models() -> Path:
    return tiny_captioners.models_dir()


def test_caption_prints_the_prompt(models, monkeypatch, capsys):
    monkeypatch.setenv("UNCROP_MODELS_DIR", str(models))
    args = [
        "caption",
        str(SAMPLES / "uncrop-coffee.jpg"),
        "--template",
        "{caption}, detailed photo",
    ]
    args += ["--max-length", "8"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out.strip()
    assert first.endswith(", detailed photo") and len(first) > 16
    assert cli.main([*args, "--captioner", str(models / "captioners" / "tiny-blip")]) == 0
    assert capsys.readouterr().out.strip() == first, "the default is the first folder, tiny-blip"


def test_caption_with_mask_and_prefix(models, capsys):
    code = cli.main(
        [
            "caption",
            str(SAMPLES / "uncrop-coffee.jpg"),
            "--mask",
            str(SAMPLES / "uncrop-coffee-mask.png"),
            "--captioner",
            str(models / "captioners" / "tiny-git"),
            "--prefix",
            "a photo of",
            "--max-length",
            "8",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("a photo of ")


def test_caption_invert_describes_the_other_region(models, monkeypatch, capsys):
    seen = []

    def caption(self, image, mask=None, options=None, progress=None):
        seen.append(mask)
        return ["x"]

    monkeypatch.setattr(cli.caption.Captioner, "caption", caption)
    args = [
        "caption",
        str(SAMPLES / "uncrop-coffee.jpg"),
        "--mask",
        str(SAMPLES / "uncrop-coffee-mask.png"),
    ]
    args += ["--captioner", str(models / "captioners" / "tiny-git")]
    assert cli.main(args) == 0 and cli.main([*args, "--invert"]) == 0
    plain, inverted = seen
    assert 0 < float(plain.mean()) < 0.5 and torch.equal(inverted, 1 - plain)


def test_no_captioner_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNCROP_MODELS_DIR", str(tmp_path))
    assert cli.main(["caption", str(SAMPLES / "uncrop-coffee.jpg")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "captioners") in err and "model.safetensors" in err


def test_captioner_without_a_model_is_refused(models, tmp_path, capsys):
    out = tmp_path / "out.png"
    args = ["outpaint", str(SAMPLES / "uncrop-coffee.jpg"), "--left", "32"]
    args += ["--captioner", str(models / "captioners" / "tiny-git"), "-o", str(out)]
    assert cli.main(args) == 2 and not out.exists()
    assert "--captioner writes the prompt for --model" in capsys.readouterr().err


def test_outpaint_with_model_samples_with_the_caption(models, tmp_path, monkeypatch, capsys):
    import tiny_models

    from uncrop.core import sampling

    sd = tiny_models.save_folder(tiny_models.tiny_sd(tmp_path), tmp_path / "sd-inpaint")
    used = []
    original = sampling.resolve_prompts

    def spy(prompt, image, mask, captioner, progress=None):
        used.append(original(prompt, image, mask, captioner, progress))
        return used[-1]

    monkeypatch.setattr(sampling, "resolve_prompts", spy)
    # The captioner leaves the device before the model goes there: never both at once.
    from uncrop.core import caption
    from uncrop.core.models import InpaintModel

    steps = []
    release, to = caption.Captioner.release, InpaintModel.to
    monkeypatch.setattr(
        caption.Captioner, "release", lambda self: (steps.append("release"), release(self))[1]
    )
    monkeypatch.setattr(
        InpaintModel, "to", lambda self, d: (steps.append("model to device"), to(self, d))[1]
    )
    out = tmp_path / "out.png"
    args = ["outpaint", str(SAMPLES / "uncrop-coffee.jpg"), "--left", "32", "--model", str(sd)]
    args += ["--steps", "1", "--captioner", str(models / "captioners" / "tiny-git"), "-o", str(out)]
    assert cli.main(args) == 0 and out.exists()
    err = capsys.readouterr().err
    prompt = next(ln for ln in err.splitlines() if ln.startswith("prompt (captioned): "))
    caption = prompt.removeprefix("prompt (captioned): ")
    assert used == [[caption]] and caption  # captioned once, on the canvas the model sees
    assert steps == ["release", "model to device"]
    assert Image.open(out).text[sampling.PROMPT_METADATA_KEY] == caption


def test_caption_passes_every_option_and_the_mask_channel(models, monkeypatch, tmp_path, capsys):
    from uncrop.core import imageio

    monkeypatch.setenv("UNCROP_MODELS_DIR", str(models))
    seen = []

    def caption(self, image, mask=None, options=None, progress=None):
        seen.append((mask, options))
        return ["x"]

    monkeypatch.setattr(cli.caption.Captioner, "caption", caption)
    marks = torch.zeros(400, 600, 3, dtype=torch.uint8)
    marks[100:200, 100:300, 0] = 255
    Image.fromarray(marks.numpy()).save(tmp_path / "marks.png")
    args = [
        "caption", str(SAMPLES / "uncrop-coffee.jpg"), "--mask", str(tmp_path / "marks.png"),
        "--channel", "red", "--region", "whole", "--max-length", "9", "--beams", "2",
        "--template", "{caption}, photo", "--prefix", "a picture of",
    ]  # fmt: skip
    assert cli.main(args) == 0 and capsys.readouterr().out.strip() == "x"
    ((mask, options),) = seen
    assert torch.equal(mask, imageio.load_mask(tmp_path / "marks.png", "red"))
    assert options == cli.caption.CaptionOptions(
        region="whole", max_length=9, beams=2, template="{caption}, photo", prefix="a picture of"
    )
