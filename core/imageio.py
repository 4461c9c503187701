"""Reading images and masks from files and URLs into IMAGE / MASK tensors.

Handles what users actually feed in: RGBA, grayscale, palette images, 16-bit PNG
and TIFF, EXIF rotation. A mask can come from the alpha channel (inverted, as
ComfyUI's LoadImage does: transparent = area to fill), the luminance or any
single colour channel.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import os
import struct
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from .canvas import MAX_SIDE
from .errors import UncropError
from .inputs import IMAGE_SLACK

log = logging.getLogger(__name__)

MASK_CHANNELS = ("alpha", "luminance", "red", "green", "blue")
URL_TIMEOUT_S = 20.0
URL_MAX_BYTES = 50 * 1024 * 1024


# What Pillow raises on damaged files besides OSError: a broken header, EXIF block or
# later frame fails deep in its parsers.
_DAMAGED = (OSError, SyntaxError, struct.error, IndexError, TypeError, ValueError, EOFError)


# Pillow's decompression-bomb guard is one global. While any file is read here it is
# raised to Uncrop's largest canvas (Pillow's default refuses a 16384x11200 photo,
# which the CLI itself writes), never lifted, and restored by the last reader out.
_LIMIT_LOCK = threading.Lock()
_limit_state = {"readers": 0, "before": None}


@contextlib.contextmanager
def _pixel_limit() -> Iterator[None]:
    with _LIMIT_LOCK:
        if _limit_state["readers"] == 0:
            _limit_state["before"] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE
        _limit_state["readers"] += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _limit_state["readers"] -= 1
            if _limit_state["readers"] == 0:
                Image.MAX_IMAGE_PIXELS = _limit_state["before"]


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    where = "the downloaded data" if isinstance(source, bytes) else str(source)
    with _pixel_limit():
        return _read(source, name, where)


def _read(source: str | os.PathLike | bytes, name: str, where: str) -> Image.Image:
    try:
        # From the bytes, a file as a download: opened by path, Pillow maps an
        # uncompressed TIFF into memory, and its EXIF rotation then scrambles it.
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_SIDE * MAX_SIDE:
            raise UncropError(
                f"{name}: {where} is {w}x{h} px, more than the {MAX_SIDE}x{MAX_SIDE} Uncrop "
                "handles; scale it down first."
            )
        # The file's own sample layout (a tile's 4th field: a plain tuple before Pillow 11).
        raw = " ".join(str(tile[3]) for tile in img.tile)
        img.load()
    except UncropError:
        raise
    except FileNotFoundError:
        raise UncropError(f"{name}: file not found: {source}") from None
    except Image.UnidentifiedImageError:  # its own message names only a BytesIO object
        raise UncropError(
            f"{name}: {where} is not in an image format this can read (PNG, JPEG, WebP, "
            "TIFF, BMP, GIF)."
        ) from None
    except Image.DecompressionBombError:  # over twice the limit: refused before our check
        raise UncropError(
            f"{name}: {where} is more than the {MAX_SIDE}x{MAX_SIDE} px Uncrop handles; "
            "scale it down first."
        ) from None
    except _DAMAGED as exc:
        raise UncropError(f"{name}: {where} is not a readable image ({exc}).") from None
    try:
        frames = getattr(img, "n_frames", 1)
    except _DAMAGED:  # counting walks every frame: a damaged later one fails here
        log.warning(
            "%s: the file's frames after the first are unreadable; the first is used.", name
        )
        frames = 1
    if frames > 1:
        log.warning(
            "%s: the file holds %d frames (an animation or pages); only the first is used.",
            name,
            frames,
        )
    if ";16" in raw and not img.mode.startswith("I"):
        log.warning(
            "%s: the file has 16 bits per colour channel, which Pillow reads as 8, so pixels "
            "outside the mask come back rounded to 1/255 (16 bits are kept for grey files).",
            name,
        )
    _fit_colour_key(img, raw, name)
    try:
        return ImageOps.exif_transpose(img) or img
    except _DAMAGED:
        log.warning("%s: the file's EXIF data is unreadable, so its orientation is ignored.", name)
        return img


def _fit_colour_key(img: Image.Image, raw: str, name: str) -> None:
    """Bring a colour key (PNG's tRNS: pixels of that value are transparent) to the
    values Pillow reads, or drop it where they cannot match it exactly."""
    key = img.info.get("transparency")
    if key is None or img.mode not in ("L", "RGB", "I;16"):
        return
    if ";16" in raw or img.mode == "I;16":  # colour read with 8 bits; grey kept at 16
        del img.info["transparency"]
        log.warning(
            "%s: the file's transparent colour key is ignored: it has 16 bits per channel, %s.",
            name,
            "which are kept exactly" if img.mode == "I;16" else "and Pillow reads 8",
        )
        return
    bits = {"L;1": 1, "L;2": 2, "L;4": 4}.get(raw)
    if bits is not None and isinstance(key, int):  # the key is a raw sample: 1 of 2 bits is 85
        img.info["transparency"] = key * (255 // (2**bits - 1))


def _to_float_array(img: Image.Image, name: str) -> np.ndarray:
    """``[H, W, C]`` float32 in 0..1, keeping 16-bit precision where there is any.

    32-bit grey files are read only where their scale is known: integers within
    16 bits (how Pillow reads many 16-bit files) and floats within 0..1 (give or
    take ``IMAGE_SLACK``); others are refused rather than guessed at.
    """
    keyed = "transparency" in img.info  # a colour key (PNG's tRNS): that colour is clear
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32)[..., None] / 65535.0
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if img.mode == "I" and 0 <= lo <= hi <= 65535:
            return (arr / 65535.0)[..., None]
        if img.mode == "F" and -IMAGE_SLACK <= lo <= hi <= 1 + IMAGE_SLACK:
            if lo < 0 or hi > 1:  # on the 0..1 scale, but past it: data (HDR), not noise
                log.warning(
                    "%s: the file holds floating-point values from %g to %g; the %d outside "
                    "0..1 are clipped to it, and written back clipped.",
                    name,
                    lo,
                    hi,
                    int(((arr < 0) | (arr > 1)).sum()),
                )
            return arr.clip(0, 1)[..., None]
        kind = "32-bit integer" if img.mode == "I" else "floating-point"
        raise UncropError(
            f"{name}: the file holds {kind} values from {lo:g} to {hi:g}, on no scale Uncrop "
            "can tell; save it with 8 or 16 bits per channel."
        )
    if img.mode in ("1", "L") and not keyed:
        return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[..., None]
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("LA"), dtype=np.float32) / 255.0
    if img.mode in ("RGBA", "PA") or (img.mode in ("P", "RGB") and keyed):
        return np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if arr.shape[-1] in (2, 4):
        return arr[..., :-1], arr[..., -1]
    return arr, None


def load_image(
    source: str | os.PathLike | bytes, name: str = "image", keep_alpha: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(image [1,H,W,3], mask [1,H,W])``; the mask is 1 - alpha (zeros if opaque).

    With ``keep_alpha`` an image that has an alpha channel comes back ``[1,H,W,4]``,
    the alpha as its last channel (a file's transparency kept through a fill).
    """
    arr = _to_float_array(_open(source, name), name)
    colour, alpha = _split_alpha(arr)
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if keep_alpha and alpha is not None:
        colour = np.concatenate([colour, alpha[..., None]], axis=-1)
    image = torch.from_numpy(np.ascontiguousarray(colour)).unsqueeze(0)
    if alpha is None:
        mask = torch.zeros(image.shape[:3])
    else:
        mask = 1.0 - torch.from_numpy(np.ascontiguousarray(alpha)).unsqueeze(0)
    return image, mask


def load_mask(
    source: str | os.PathLike | bytes,
    channel: str = "luminance",
    invert: bool = False,
    threshold: float = 0.0,
    name: str = "mask",
) -> torch.Tensor:
    """Return a ``[1,H,W]`` mask read from one channel of an image.

    ``alpha`` is inverted as ComfyUI's LoadImage does (transparent = fill); the other
    channels are taken as they are (white = fill). ``invert`` flips the result and a
    ``threshold`` above 0 makes it binary.
    """
    if channel not in MASK_CHANNELS:
        raise UncropError(f"channel: expected one of {', '.join(MASK_CHANNELS)}, got '{channel}'.")
    if not 0.0 <= threshold <= 1.0:
        raise UncropError(f"threshold: expected a value in 0..1, got {threshold}.")
    arr = _to_float_array(_open(source, name), name)
    colour, alpha = _split_alpha(arr)
    if channel == "alpha":
        if alpha is None:
            raise UncropError(
                f"{name}: the image has no alpha channel, so 'alpha' would give an empty "
                "mask. Choose channel 'luminance' for a black-and-white mask."
            )
        values = 1.0 - alpha
    elif channel == "luminance" or colour.shape[-1] == 1:
        values = (
            colour[..., 0]
            if colour.shape[-1] == 1
            else colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        )
    else:
        values = colour[..., {"red": 0, "green": 1, "blue": 2}[channel]]
    if channel != "alpha" and alpha is not None and np.ptp(values) == 0 < np.ptp(alpha):
        # A mask drawn as transparency (ComfyUI's way) read by its colour: all or nothing.
        raise UncropError(
            f"{name}: its {channel} is the same everywhere (the mask would be all or "
            "nothing), but its alpha varies: choose channel 'alpha' (transparent = fill)."
        )
    mask = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).unsqueeze(0)
    if invert:
        mask = 1.0 - mask
    if threshold > 0:
        mask = (mask >= threshold).float()
    return mask


# The formats written, by extension; those that keep every pixel as written, and
# those with an alpha channel.
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
}
LOSSLESS_FORMATS = ("PNG", "WEBP", "TIFF", "BMP")
ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")


# Sides past which a format cannot store an image (WebP's header holds 14 bits).
FORMAT_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}


def output_format(
    path: str | os.PathLike, name: str = "output", size: tuple[int, int] | None = None
) -> str:
    """The Pillow format ``path``'s extension names; raises if it cannot be written there,
    or cannot hold an image of ``size`` (width, height) when given.

    Checked before any work is done, so a typo costs nothing.
    """
    p = Path(path)
    fmt = OUTPUT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UncropError(f"{name}: '{p}' needs one of the extensions {', '.join(OUTPUT_FORMATS)}.")
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise UncropError(f"{name}: '{p}' is a folder; give a file name such as {p / 'out.png'}.")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UncropError(f"{name}: '{parent}' is a file, so '{p}' cannot be written.")
            try:  # the nearest folder there is: the rest is made in it when saving
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                raise UncropError(
                    f"{name}: cannot write in '{parent}' ({exc.strerror or exc})."
                ) from None
            break
    limit = FORMAT_MAX_SIDE.get(fmt)
    if size is not None and limit is not None and max(size) > limit:
        raise UncropError(
            f"{name}: {fmt} holds at most {limit} px per side, and this image is "
            f"{size[0]}x{size[1]}; write .png or .tif instead."
        )
    return fmt


class FileTraits(NamedTuple):
    """What an input file says about how its result should be written."""

    bits: int  # a value's: 8, 16 (16-bit grey; 32-bit integers on a 16-bit scale) or 32 (floats)
    icc_profile: bytes | None  # its embedded colour profile, to write with the result


def file_traits(path: str | os.PathLike) -> FileTraits:
    """:class:`FileTraits` of the image file at ``path``, from its header: a result is
    then written with 16 bits where the format allows, whatever values the fill gave,
    and with the input's colour profile, so that a colour-managed viewer shows the
    pixels kept from the input as it showed the input."""
    try:
        with _pixel_limit(), Image.open(path) as img:
            bits = 32 if img.mode == "F" else 16 if img.mode.startswith("I") else 8
            return FileTraits(bits, img.info.get("icc_profile"))
    except _DAMAGED:
        return FileTraits(8, None)  # load_image says what is wrong with it


GREY_MODES = ("L", "LA", "I;16", "F")  # the grey modes save_image writes


def _profile_for(profile: bytes | None, mode: str, name: str) -> bytes | None:
    """``profile`` if its colour space (bytes 16-19 of an ICC header) is that of an
    image in ``mode``, else None, with a warning (a CMYK file is written as RGB)."""
    if not profile:
        return None
    space = profile[16:20]
    if space == (b"GRAY" if mode in GREY_MODES else b"RGB "):  # (WebP: RGB)
        return profile
    log.warning(
        "%s: the input's colour profile is for %s and this output is %s, so it is written "
        "without one; colours may look different in colour-managed viewers.",
        name,
        space.decode("ascii", "replace").strip() or "an unknown colour space",
        "grey" if mode in GREY_MODES else "RGB",
    )
    return None


def save_image(
    image: torch.Tensor,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    name: str = "output",
    bits: int = 8,
    icc_profile: bytes | None = None,
) -> None:
    """Write the first image of an IMAGE batch, 8 bits per channel, in the format of the
    extension (see :func:`output_format`), with ``icc_profile`` (see
    :func:`file_traits`) where its colour space is the image's.

    With ``bits`` above 8 (the input's, see :func:`file_traits`) a grey image goes to
    TIFF with them (16-bit integers or 32-bit floats) and to PNG with 16; anything else
    is written with 8, with a warning that the unmasked pixels are rounded (Pillow
    writes more than 8 bits for grey images only, and floats to TIFF only).
    WebP is written lossless and JPEG at quality 95, with a warning that it changes
    pixels; an alpha channel is dropped, with a warning, where the format has none.
    ``metadata`` goes into PNG text chunks (ignored for other formats).
    """
    fmt = output_format(path, name, (int(image.shape[2]), int(image.shape[1])))
    values = image[0].detach().float().cpu().clamp(0, 1)
    # Three equal colour channels: a grey input, read as RGB.
    equal = values.shape[-1] >= 3 and bool((values[..., :3] == values[..., :1]).all())
    grey = values.shape[-1] == 1 or (values.shape[-1] == 3 and equal)
    if bits == 32 and grey and fmt == "TIFF":
        arr = np.ascontiguousarray(values[..., 0].numpy(), dtype=np.float32)
        return _write(Image.fromarray(arr, "F"), path, fmt, metadata, name, icc_profile)
    if bits > 8 and grey and fmt in ("PNG", "TIFF"):
        if bits == 32:
            log.warning(
                "%s: the input holds 32-bit floats; PNG holds 16-bit integers at most, so "
                "pixels outside the mask are rounded to 1/65535 (write .tif to keep them).",
                name,
            )
        arr = (values[..., 0].numpy() * 65535.0 + 0.5).astype(np.uint16)
        return _write(Image.fromarray(arr), path, fmt, metadata, name, icc_profile)
    if bits > 8:
        log.warning(
            "%s: the input has %d bits per channel; this output is written with 8, so pixels "
            "outside the mask are rounded to 1/255 (more bits are written for grey PNG and "
            "TIFF only).",
            name,
            bits,
        )
    arr = (values.numpy() * 255.0 + 0.5).astype(np.uint8)
    if equal and fmt != "WEBP" and icc_profile is not None and icc_profile[16:20] == b"GRAY":
        # written grey again, so its grey profile fits (WebP stores grey as RGB)
        arr = arr[..., [0, 3]] if arr.shape[-1] == 4 else arr[..., :1]
    if arr.shape[-1] in (2, 4) and fmt not in ALPHA_FORMATS:
        log.warning("%s: %s has no alpha channel; the transparency is dropped.", name, fmt)
        arr = arr[..., :-1]
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    _write(Image.fromarray(arr), path, fmt, metadata, name, icc_profile)


def _write(
    img: Image.Image,
    path: str | os.PathLike,
    fmt: str,
    metadata: dict[str, str] | None,
    name: str,
    icc_profile: bytes | None = None,
) -> None:
    """Save ``img`` in ``fmt``: PNG text chunks, lossless WebP, a warning for lossy formats."""
    options: dict = {}
    profile = _profile_for(icc_profile, "RGB" if fmt == "WEBP" else img.mode, name)
    if profile is not None:  # (Pillow leaves it out of a BMP)
        options["icc_profile"] = profile
    if fmt == "PNG" and metadata:
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    elif fmt == "WEBP":  # exact: keep the colour under fully transparent pixels too
        options.update(lossless=True, exact=True)
    elif fmt == "JPEG":
        options["quality"] = 95
    if fmt not in LOSSLESS_FORMATS:
        log.warning(
            "%s: %s is lossy, so pixels outside the mask change slightly; use .png or .webp "
            "to keep them exactly.",
            name,
            fmt,
        )
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format=fmt, **options)
    except (OSError, ValueError) as exc:
        raise UncropError(f"{name}: could not write {path}: {exc}") from None


def resolve_in_folder(folder: str | os.PathLike, filename: str, name: str = "image") -> Path:
    """The path of ``filename`` inside ``folder``; refuses anything that leaves it."""
    root = Path(folder).resolve()
    try:  # a NUL byte or a name too long for the system fail here
        candidate = (root / filename).resolve()
        inside = candidate.is_relative_to(root)
        found = candidate.is_file()
    except (OSError, ValueError):
        raise UncropError(
            f"{name}: {filename[:100]!r} is not a file name this system can open."
        ) from None
    if not filename or os.path.isabs(filename) or not inside:
        raise UncropError(
            f"{name}: '{filename}' is outside the folder {root}; pick a file inside it."
        )
    if not found:
        raise UncropError(f"{name}: '{filename}' was not found in the folder {root}.")
    return candidate


def fetch_url(
    url: str,
    *,
    timeout: float = URL_TIMEOUT_S,
    max_bytes: int = URL_MAX_BYTES,
    name: str = "mask_url",
) -> bytes:
    """Download an image over http(s) with a size cap, a type check and a ``timeout``
    in seconds: for the whole download (a server that trickles bytes is cut off too),
    give or take one read, which may wait up to ``timeout`` itself.

    Spaces and non-ASCII letters in the path or query are percent-encoded, as a
    browser does.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise UncropError(f"{name}: '{url}' is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UncropError(f"{name}: only http:// and https:// URLs are accepted, got '{url}'.")
    encoded = parts._replace(
        path=urllib.parse.quote(parts.path, safe="/%:@!$&'()*+,;="),
        query=urllib.parse.quote(parts.query, safe="/?%:@!$&'()*+,;="),
    ).geturl()
    request = urllib.request.Request(encoded, headers={"User-Agent": "uncrop", "Accept": "image/*"})
    opener = urllib.request.build_opener(_NoSchemeChangeRedirect())
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type and not content_type.startswith("image/"):
                raise UncropError(f"{name}: {url} returned '{content_type}', not an image.")
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise UncropError(
                    f"{name}: {url} is {int(length)} bytes, over the {max_bytes}-byte limit."
                )
            chunks, size = [], 0
            while size <= max_bytes:
                if time.monotonic() > deadline:
                    raise UncropError(f"{name}: {url} took over {timeout:g} s to download.")
                chunk = response.read1(1 << 16)  # what one read brings, at most 64 KiB
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except UncropError as exc:
        message = str(exc)
        raise UncropError(
            message if message.startswith(f"{name}:") else f"{name}: {message}"
        ) from None
    # OSError: URLError, HTTPError, timeouts; HTTPException: a malformed response;
    # ValueError: a URL http.client refuses (a bad port, say).
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise UncropError(f"{name}: could not download {url}: {exc!s}.") from None
    if len(data) > max_bytes:
        raise UncropError(f"{name}: {url} is over the {max_bytes}-byte limit.")
    return data


class _NoSchemeChangeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to other http(s) URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # urllib already stops file:// redirects but would follow ftp://.
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise UncropError(f"refused a redirect to '{newurl}'.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def is_url(text: str) -> bool:
    """Whether ``text`` is meant as an http(s) URL (:func:`fetch_url` says if it is a bad one)."""
    return text.lower().startswith(("http://", "https://"))


__all__ = [
    "ALPHA_FORMATS",
    "LOSSLESS_FORMATS",
    "OUTPUT_FORMATS",
    "MASK_CHANNELS",
    "fetch_url",
    "is_url",
    "load_image",
    "load_mask",
    "output_format",
    "resolve_in_folder",
    "file_traits",
    "save_image",
]
