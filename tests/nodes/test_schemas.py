"""Checks every node the pack registers, including ones added later."""

import asyncio
import inspect

import pytest

import uncrop
from uncrop.nodes import NODES

# Ids saved workflows depend on. Add new ones when they are released; never remove.
RELEASED_IDS = {
    "UncropLoadMask",
    "UncropRefineMask",
    "UncropExpandCanvas",
    "UncropFill",
    "UncropComposite",
    "UncropLoadInpaintModel",
    "UncropInpaint",
    "UncropOutpaint",
    "UncropLoadCaptioner",
    "UncropCaptionImage",
}

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def schemas():
    return [(node, node.define_schema()) for node in NODES]


def test_entrypoint_lists_every_node():
    extension = asyncio.run(uncrop.comfy_entrypoint())
    assert asyncio.run(extension.get_node_list()) == NODES


def test_released_ids_still_exist_and_ids_unique():
    ids = [s.node_id for _, s in schemas()]
    assert len(ids) == len(set(ids))
    assert set(ids) >= RELEASED_IDS
    assert all(i.startswith("Uncrop") for i in ids)


@pytest.mark.parametrize("node,schema", schemas(), ids=lambda x: getattr(x, "node_id", ""))
def test_schema_is_complete(node, schema):
    assert schema.display_name and not schema.display_name.startswith("Uncrop")
    assert schema.category.startswith("Uncrop")
    assert len(schema.description) > 30
    ids = [i.id for i in schema.inputs]
    assert len(ids) == len(set(ids))
    for inp in schema.inputs:
        assert inp.tooltip and len(inp.tooltip) > 10, f"{schema.node_id}.{inp.id} needs a tooltip"
        kind = inp.get_io_type()
        if kind in WIDGET_TYPES and not inp.optional:
            # a file list (no default) is [""] when its folder is empty
            assert inp.default is not None or (kind == "COMBO" and inp.options in ([], [""])), (
                f"{inp.id} default"
            )
        if kind in ("INT", "FLOAT") and inp.default is not None:
            assert inp.min <= inp.default <= inp.max, (
                f"{schema.node_id}.{inp.id} default out of bounds"
            )
        if inp.id == "seed":  # ComfyUI's own range, as KSampler's: a pasted seed fits
            assert (inp.min, inp.max) == (0, 2**64 - 1), f"{schema.node_id}.seed range"
        if kind == "COMBO" and inp.options and inp.default is not None:
            assert inp.default in inp.options, f"{schema.node_id}.{inp.id} default not an option"
    for out in schema.outputs:
        assert out.display_name
        assert out.tooltip and len(out.tooltip) > 10, f"{schema.node_id}.{out.display_name} tooltip"
    params = inspect.signature(node.execute).parameters
    assert set(ids) <= set(params) or any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_validate_inputs_names_its_inputs(node):
    """ComfyUI skips its own min/max/options checks for a validate_inputs with **kwargs."""
    if "validate_inputs" in vars(node):
        assert inspect.getfullargspec(node.validate_inputs).varkw is None


def test_search_aliases_where_comfyui_takes_them(monkeypatch):
    """ComfyUI after 0.8.0 finds nodes by ``search_aliases``; 0.8.0 and older refuse the keyword
    (the stub is 0.8's Schema), so each node gives aliases only where they are taken."""
    import dataclasses

    from comfy_api.latest import io

    from uncrop.nodes import host

    assert all(not hasattr(s, "search_aliases") for _, s in schemas())

    @dataclasses.dataclass
    class NewerSchema(io.Schema):
        search_aliases: list[str] = dataclasses.field(default_factory=list)

    monkeypatch.setattr(io, "Schema", NewerSchema)
    host._schema_fields.cache_clear()
    try:
        for _, schema in schemas():
            words = schema.search_aliases
            assert len(words) >= 3, schema.node_id
            assert len(set(words)) == len(words), schema.node_id
            assert all(w == w.strip().lower() and w != schema.display_name.lower() for w in words)
    finally:
        monkeypatch.undo()
        host._schema_fields.cache_clear()
