"""Load Mask and Refine Mask."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from comfy_api.latest import io

from ..core import imageio
from ..core.inputs import check_mask
from ..core.masks import MAX_FEATHER, MAX_GROW, refine_mask
from . import host


class LoadMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropLoadMask",
            display_name="Load Mask",
            category="Uncrop/mask",
            **host.search_aliases("load image mask", "mask from image", "alpha mask", "mask url"),
            description=(
                "Loads a mask from an image in ComfyUI's input folder or from an http(s) URL. "
                "White (or transparent, with the alpha channel) marks the area to fill."
            ),
            inputs=[
                io.Combo.Input(
                    "image",
                    # "" in an empty folder: a prompt giving only a url still validates
                    options=host.input_files() or [""],
                    upload=io.UploadType.image,
                    tooltip="Mask image in ComfyUI's input folder; use the upload button to add one.",
                ),
                io.Combo.Input(
                    "channel",
                    options=list(imageio.MASK_CHANNELS),
                    default="luminance",
                    tooltip=(
                        "Which channel holds the mask. alpha: transparent = fill (as LoadImage). "
                        "luminance/red/green/blue: white = fill."
                    ),
                ),
                io.Boolean.Input(
                    "invert", default=False, tooltip="Swap the area to fill and the area to keep."
                ),
                io.Float.Input(
                    "threshold",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="0 keeps soft edges; above 0, values at or above it become 1 and the rest 0.",
                ),  # fmt: skip
                io.String.Input(
                    "url",
                    default="",
                    optional=True,
                    tooltip="Optional http(s) URL of the mask image; when set it is used instead of the file.",
                ),
            ],
            outputs=[
                io.Mask.Output(
                    display_name="mask",
                    tooltip="1 = area to fill, from the chosen channel (inverted if asked).",
                )
            ],
        )

    @classmethod
    def execute(
        cls, image: str, channel: str, invert: bool, threshold: float, url: str = ""
    ) -> io.NodeOutput:
        if url.strip():
            # What fingerprint_inputs just downloaded, else a download now.
            source = _fetched.get(url.strip()) or _fetch(url.strip())
        else:
            folder, filename = host.input_file_path(image)
            source = imageio.resolve_in_folder(folder, filename, name="image")
        mask = imageio.load_mask(
            source,
            channel=channel,
            invert=invert,
            threshold=threshold,
            name="url" if url and url.strip() else "image",
        )
        return io.NodeOutput(host.node_output(mask))

    @classmethod
    def fingerprint_inputs(
        cls, image: str | None, channel: str, invert: bool, threshold: float, url: str | None = ""
    ) -> str | float:
        """A hash of the mask's bytes: a changed file or URL content runs again.

        A linked input comes as None (its value is not known yet): ComfyUI runs the node
        again when what feeds it changes. With a linked url the file is still hashed, in
        case the url turns out empty.
        """
        if url is None:  # unknown until run: execute downloads it then, not from the store
            _fetched.clear()
        try:
            if url and url.strip():
                data = _fetch(url.strip())
            elif image is None:
                return "linked image"
            else:
                folder, filename = host.input_file_path(image)
                data = imageio.resolve_in_folder(folder, filename, name="image").read_bytes()
        except (ValueError, OSError):  # UncropError is a ValueError
            return "linked url" if url is None else float("nan")  # nan: execute says what is wrong
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def validate_inputs(cls, image: str | None = "", url: str | None = "") -> bool | str:
        # Named inputs only: a **kwargs here would switch off ComfyUI's own range checks.
        # An input left out of the prompt takes these defaults; a linked one comes as None.
        if url is None or (image is None and not url.strip()):  # linked: known at run time
            return True
        if url.strip():
            return (
                True
                if imageio.is_url(url.strip())
                else f"url: only http(s) URLs are accepted, got '{url}'."
            )
        if not image:
            return (
                "image: no mask file chosen; upload one (or put one in the input folder) "
                "or give a url."
            )
        folder, filename = host.input_file_path(image)
        try:
            imageio.resolve_in_folder(folder, filename, name="image")
        except ValueError as exc:
            return str(exc)
        return True


# The bytes fingerprint_inputs downloaded, by URL, for the executes that follow it
# (ComfyUI calls both in one thread): each node reading a URL downloads it once, to
# fingerprint it, and not again to run. The latest downloads are kept, up to one
# download's size limit in all.
_fetched: OrderedDict[str, bytes] = OrderedDict()


def _fetch(url: str) -> bytes:
    data = imageio.fetch_url(url, name="url")
    _fetched[url] = data
    _fetched.move_to_end(url)
    while len(_fetched) > 1 and sum(map(len, _fetched.values())) > imageio.URL_MAX_BYTES:
        _fetched.popitem(last=False)
    return data


class RefineMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UncropRefineMask",
            display_name="Refine Mask",
            category="Uncrop/mask",
            **host.search_aliases(
                "grow mask",
                "shrink mask",
                "feather mask",
                "blur mask",
                "fill mask holes",
                "remove specks",
                "dilate",
                "erode",
                "threshold mask",
            ),
            description=(
                "Cleans up a mask in a fixed order: threshold, remove specks, fill holes, "
                "grow or shrink, feather. Batched, on the GPU when there is one."
            ),
            inputs=[
                io.Mask.Input("mask", tooltip="The mask to refine (1 = area to fill)."),
                io.Int.Input(
                    "grow",
                    default=0,
                    min=-MAX_GROW,
                    max=MAX_GROW,
                    step=1,
                    tooltip="Grow the area to fill by this many px; negative values shrink it.",
                ),  # fmt: skip
                io.Float.Input(
                    "feather",
                    default=0.0,
                    min=0.0,
                    max=MAX_FEATHER,
                    step=0.5,
                    tooltip="Soften the edge over about this many px (gaussian) so fills blend in.",
                ),  # fmt: skip
                io.Boolean.Input(
                    "fill_holes",
                    default=False,
                    tooltip="Also fill unmasked islands completely enclosed by the mask.",
                ),  # fmt: skip
                io.Int.Input(
                    "remove_specks",
                    default=0,
                    min=0,
                    max=1_000_000,
                    step=1,
                    tooltip="Drop masked islands smaller than this many px (0 = keep all).",
                ),  # fmt: skip
                io.Float.Input(
                    "threshold",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="Applied first: values at or above it become 1, the rest 0 (0 = off).",
                ),  # fmt: skip
            ],
            outputs=[
                io.Mask.Output(
                    display_name="mask",
                    tooltip="The refined mask, ready for Fill, Inpaint or Composite.",
                )
            ],
        )

    @classmethod
    def execute(
        cls, mask, grow: int, feather: float, fill_holes: bool, remove_specks: int, threshold: float
    ) -> io.NodeOutput:
        mask = check_mask(mask)
        out = refine_mask(
            mask,
            grow_px=grow,
            feather_px=feather,
            fill_holes_=fill_holes,
            min_speck_area=remove_specks,
            threshold_level=threshold,
            progress=host.Progress(),
            device=host.torch_device(),  # one mask at a time: the batch stays where it is
        )
        return io.NodeOutput(host.node_output(out))
