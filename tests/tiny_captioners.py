"""Tiny random-weight image captioners, built from configs for the tests.

Each builder writes a folder laid out exactly like a model downloaded from the
hub (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
tokenizer files), so the tests load it through the real loading path. Nothing
is downloaded: the tokenizer is a WordPiece vocabulary of a few dozen words and
the networks have one or two layers of width 32.

Random weights give almost flat logits, so the builders push the special tokens
down in the output layer: the models then always write words (never an empty
caption) until the length limit, and the same input always gives the same text.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
WORDS = [
    "a",
    "an",
    "the",
    "there",
    "is",
    "are",
    "of",
    "on",
    "in",
    "near",
    "with",
    "and",
    "photo",
    "picture",
    "boat",
    "sand",
    "building",
    "beach",
    "sea",
    "sky",
    "tree",
    "dog",
    "cat",
    "man",
    "woman",
    "house",
    "red",
    "blue",
    "green",
    "sitting",
    "standing",
    "water",
    "road",
    "car",
    "street",
    "mountain",
    "grass",
    "field",
    "detailed",
]
PAD, UNK, CLS, SEP, MASK, DEC = range(len(SPECIALS))
IMAGE_SIZE = 32
PATCH = 8
HIDDEN = 32


def _tokenizer():
    from transformers import BertTokenizer

    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    return BertTokenizer(vocab=vocab, do_lower_case=True, bos_token="[DEC]")


def _silence_specials(bias: torch.Tensor) -> None:
    with torch.no_grad():
        bias[: len(SPECIALS)] = -10.0


def build_blip(folder: Path, seed: int = 0) -> Path:
    """A BlipForConditionalGeneration with a 32x32 input, saved to ``folder``."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab_size = len(SPECIALS) + len(WORDS)
    config = BlipConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": HIDDEN,
            "encoder_hidden_size": HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": DEC,
            "pad_token_id": PAD,
            "eos_token_id": SEP,
            "sep_token_id": SEP,
        },
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
        },
        projection_dim=HIDDEN,
    )
    model = BlipForConditionalGeneration(config).eval()
    _silence_specials(model.text_decoder.cls.predictions.bias)
    model.save_pretrained(folder, safe_serialization=True)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


def build_git(folder: Path, seed: int = 0) -> Path:
    """A GitForCausalLM with a 32x32 input, saved to ``folder``."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab_size = len(SPECIALS) + len(WORDS)
    config = GitConfig(
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
        },
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=CLS,
        eos_token_id=SEP,
        pad_token_id=PAD,
    )
    model = GitForCausalLM(config).eval()
    _silence_specials(model.output.bias)
    model.save_pretrained(folder, safe_serialization=True)
    processor = GitProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        ),
        tokenizer=_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


BUILDERS = {"blip": build_blip, "git": build_git}


_BUILT: dict[str, Path] = {}


def models_dir() -> Path:
    """A ``models`` folder with ``captioners/tiny-blip`` and ``captioners/tiny-git``.

    Built once per test process in a temporary folder (about a second each).
    """
    if "root" not in _BUILT:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="uncrop-captioners-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        for family, build in BUILDERS.items():
            build(root / "captioners" / f"tiny-{family}")
        _BUILT["root"] = root
    return _BUILT["root"]
