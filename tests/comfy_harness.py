"""In-process ComfyUI harness for integration tests.

Loads a real ComfyUI checkout (v0.8.x, V3 node API) inside the test process on
a CPU-only machine, registers a custom node pack the way ComfyUI does, turns
editor (UI-format) workflow JSON into API prompts and executes them with
ComfyUI's own validator and executor.

Typical use::

    prepare_comfyui("/path/to/ComfyUI", str(tmp_path))
    node_ids = load_pack("/path/to/pack")
    result = run_prompt(ui_to_api(json.load(open("workflow.json"))))
    result["outputs"]["9"]["images"][0]["filename"]

Call order matters: ``prepare_comfyui`` first (it must run before anything
imports ``comfy.model_management``), then ``load_pack``, then the rest.
ComfyUI keeps global state (node registry, folder paths, model cache), so one
ComfyUI per process: call ``prepare_comfyui`` once per session.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import logging
import os
import sys
import threading
import time
import types
import uuid
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# Top-level module names ComfyUI imports by absolute name. If one of them was
# already imported from somewhere else (e.g. a pack's own ``nodes`` package),
# ComfyUI would silently get the wrong module.
_COMFY_TOP_LEVEL = ("nodes", "execution", "folder_paths", "server", "comfy", "utils", "app")

# Node types that exist only in the editor and never reach the backend.
_FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}

# LiteGraph node modes (LGraphEventMode).
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4

# Input option keys that make the frontend add an "upload" button widget whose
# value is stored in widgets_values right after the combo's value.
_UPLOAD_KEYS = (
    "image_upload",
    "video_upload",
    "audio_upload",
    "animated_image_upload",
    "file_upload",
)

_state: dict[str, Any] = {"prepared": False, "builtin_nodes": None}


# --------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------


def _stub_torchvision_if_missing() -> None:
    """Insert a minimal fake ``torchvision`` if the real one is not installed.

    ComfyUI imports torchvision at module level (``comfy/ldm/cascade``,
    ``comfy/ldm/cosmos``, ``comfy_extras/nodes_wanmove``) but only uses it
    inside model code we never run here. The stub carries a ModuleSpec so that
    ``importlib.util.find_spec("torchvision")`` (used by transformers and
    diffusers to probe for it) does not raise; those libraries then see no
    package metadata and treat torchvision as absent. Any attribute use fails
    with an AttributeError that names the stub.
    """
    try:
        import torchvision  # noqa: F401

        return
    except ImportError:
        pass
    # transformers decides once, at import, whether torchvision is usable, and would
    # take the stub for the real thing; let it see the truth before the stub exists.
    try:
        import transformers.image_utils  # noqa: F401
        import transformers.modeling_utils  # noqa: F401
    except ImportError:
        pass

    def make(name: str) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
        mod.__path__ = []  # a package, so ``import torchvision.x.y`` works

        def __getattr__(attr: str) -> Any:
            raise AttributeError(f"{name}.{attr}: torchvision is a test stub (not installed)")

        mod.__getattr__ = __getattr__  # type: ignore[method-assign]
        mod.__comfy_harness_stub__ = True
        sys.modules[name] = mod
        return mod

    root = make("torchvision")
    root.transforms = make("torchvision.transforms")
    root.transforms.functional = make("torchvision.transforms.functional")
    root.models = make("torchvision.models")
    root.ops = make("torchvision.ops")
    root.utils = make("torchvision.utils")
    logger.info("torchvision not installed: using an import-only stub")


def _check_no_shadowing(comfyui_path: str) -> None:
    """Fail early if a ComfyUI top-level module name was imported from elsewhere."""
    root = os.path.realpath(comfyui_path)
    for name in _COMFY_TOP_LEVEL:
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None) if mod else None
        if file and not os.path.realpath(file).startswith(root + os.sep):
            raise RuntimeError(
                f"module {name!r} is already imported from {file}, which shadows ComfyUI's "
                f"{name!r}; do not import it (or put its parent dir on sys.path) before "
                "prepare_comfyui()"
            )


def prepare_comfyui(comfyui_path: str, tmp_dir: str) -> None:
    """Make ComfyUI importable in-process, in CPU mode, with dirs under ``tmp_dir``.

    Creates ``input``, ``output``, ``temp`` and ``user`` under ``tmp_dir``.
    Idempotent for the same ComfyUI path (later calls only re-point the dirs).
    """
    comfyui_path = os.path.abspath(comfyui_path)
    dirs = {d: os.path.join(tmp_dir, d) for d in ("input", "output", "temp", "user")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    if _state["prepared"] and _state["comfyui_path"] != comfyui_path:
        raise RuntimeError(
            f"ComfyUI already loaded from {_state['comfyui_path']}; one ComfyUI per process"
        )
    if not _state["prepared"]:
        started = time.perf_counter()
        _check_no_shadowing(comfyui_path)
        if comfyui_path not in sys.path:
            # ComfyUI runs with its root as sys.path[0]; it must win over any
            # same-named module (e.g. a pack's own ``nodes`` package).
            sys.path.insert(0, comfyui_path)
        _stub_torchvision_if_missing()

        # comfy.cli_args parses sys.argv only after comfy.options.enable_args_parsing()
        # (main.py calls it). We never call it, so it parses [] and pytest's argv is
        # ignored. Flags must be set before comfy.model_management is imported,
        # since that module decides the device at import time.
        from comfy.cli_args import args

        if "comfy.model_management" in sys.modules:
            logger.warning("comfy.model_management was imported before prepare_comfyui()")
        args.cpu = True
        args.disable_all_custom_nodes = True  # we load packs explicitly, never custom_nodes/
        args.enable_manager = False

        # nodes.py puts <comfyui>/comfy at sys.path[0], after which a bare
        # ``import utils`` finds comfy/utils.py. main.py imports the real
        # ``utils`` package before nodes; do the same or server.py (imported by
        # comfy_extras/nodes_images.py) fails with "'utils' is not a package".
        import utils.extra_config  # noqa: F401

        # isort: split
        import comfy.model_management as mm

        if mm.cpu_state != mm.CPUState.CPU:
            raise RuntimeError(
                "ComfyUI is not in CPU mode: comfy.model_management was "
                "imported before prepare_comfyui() set args.cpu"
            )
        import execution  # noqa: F401  (pulls in nodes, comfy.sd, ...)

        import nodes  # noqa: F401

        _state.update(prepared=True, comfyui_path=comfyui_path)
        logger.info("ComfyUI core imported in %.1fs", time.perf_counter() - started)

    import folder_paths

    folder_paths.set_input_directory(dirs["input"])
    folder_paths.set_output_directory(dirs["output"])
    folder_paths.set_temp_directory(dirs["temp"])
    folder_paths.set_user_directory(dirs["user"])


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion, also from inside a running event loop.

    ComfyUI v0.8 node loading, validation and execution are all ``async``.
    ``asyncio.run`` refuses to nest (e.g. under pytest-asyncio), so in that
    case the coroutine runs on a fresh loop in a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case; asyncio.run outside the except keeps tracebacks clean
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class _LogCapture(logging.Handler):
    """Collects WARNING+ records; ComfyUI logs import errors instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _require_prepared() -> None:
    if not _state["prepared"]:
        raise RuntimeError("call prepare_comfyui() first")


def _ensure_builtin_nodes() -> set[str]:
    """Register comfy_extras nodes once (nodes.py's own nodes are registered on import).

    API nodes (comfy_api_nodes, paid cloud services) and custom_nodes/ are skipped.
    Returns the set of built-in node ids.
    """
    if _state["builtin_nodes"] is None:
        import nodes

        started = time.perf_counter()
        failed = _run_async(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        if failed:
            logger.info("comfy_extras modules that did not import (missing deps): %s", failed)
        _state["builtin_nodes"] = set(nodes.NODE_CLASS_MAPPINGS)
        logger.info(
            "built-in nodes registered in %.1fs (%d nodes)",
            time.perf_counter() - started,
            len(_state["builtin_nodes"]),
        )
    return _state["builtin_nodes"]


def load_pack(pack_dir: str) -> list[str]:
    """Load a custom node pack directory like ComfyUI does; return the node ids it registered.

    Uses ``nodes.load_custom_node`` with the built-in node names as ``ignore``
    (as ComfyUI's startup does, so a pack cannot replace a core node). That
    function swallows exceptions and only logs them, so a failed load is
    turned into an AssertionError carrying the logged traceback.
    """
    _require_prepared()
    builtin = _ensure_builtin_nodes()
    import nodes

    pack_dir = os.path.abspath(pack_dir)
    before = dict(nodes.NODE_CLASS_MAPPINGS)
    capture = _LogCapture()
    logging.getLogger().addHandler(capture)
    try:
        ok = _run_async(
            nodes.load_custom_node(pack_dir, ignore=builtin, module_parent="custom_nodes")
        )
    finally:
        logging.getLogger().removeHandler(capture)
    if not ok:
        raise AssertionError(
            f"ComfyUI failed to load pack {pack_dir}:\n" + "\n".join(capture.messages)
        )
    # Identity comparison, so that reloading a pack still reports its nodes.
    return sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if before.get(k) is not v)


# --------------------------------------------------------------------------
# UI workflow -> API prompt
# --------------------------------------------------------------------------


def _widget_layout(node_class: type) -> list[tuple[str, int, Any]]:
    """(input name, extra widgets_values slots, default) for each widget input, in UI order.

    Mirrors the editor: required then optional inputs in declaration order;
    INT/FLOAT/STRING/BOOLEAN/COMBO inputs get a widget unless ``forceInput``.
    Extra slots: an INT named seed/noise_seed (unless control_after_generate
    is explicitly false) or any INT/FLOAT with control_after_generate gets a
    "fixed"/"randomize" control value; a COMBO with control_after_generate gets
    the control value plus a filter-list value. A COMBO with ``image_upload`` (and the
    other upload kinds) gets an "upload" button whose value comes last, after every
    other widget's (the editor adds that input after the node's listed ones: frontend
    1.35's getOrderedInputSpecs), so it shifts nothing here.
    V3 classes expose the same V1-style dict through ``INPUT_TYPES()``
    (a V3 combo is ``("COMBO", {"options": [...]})``, a V1 one ``([...], {})``).
    The default is what the editor gives a widget that has no saved value
    (a workflow saved before the input was added to the node).
    """
    spec = node_class.INPUT_TYPES()
    layout: list[tuple[str, int, Any]] = []
    for section in ("required", "optional"):
        for name, entry in (spec.get(section) or {}).items():
            io_type = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            kind = "COMBO" if isinstance(io_type, (list, tuple)) else io_type
            if kind not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") or opts.get("forceInput"):
                continue
            control = opts.get("control_after_generate")
            if control is None and kind == "INT":
                control = name in ("seed", "noise_seed")
            extra = 0
            if control and kind in ("INT", "FLOAT"):
                extra = 1
            elif control and kind == "COMBO":
                extra = 2
            default = opts.get("default")
            if default is None:
                options = (
                    io_type
                    if kind == "COMBO" and isinstance(io_type, (list, tuple))
                    else opts.get("options") or []
                )
                default = {
                    "INT": 0,
                    "FLOAT": 0.0,
                    "STRING": "",
                    "BOOLEAN": False,
                    "COMBO": options[0] if options else None,
                }[kind]
            layout.append((name, extra, default))
    return layout


def _links_table(workflow: dict) -> dict[int, tuple[int, int, str]]:
    """link id -> (origin node id, origin slot, type); accepts array or object links."""
    table: dict[int, tuple[int, int, str]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            table[link["id"]] = (link["origin_id"], link["origin_slot"], link.get("type", "*"))
        else:
            link_id, origin_id, origin_slot, _target, _slot, link_type = link[:6]
            table[link_id] = (origin_id, origin_slot, link_type)
    return table


def _types_match(a: Any, b: Any) -> bool:
    if a in ("*", "", None) or b in ("*", "", None):
        return True
    return bool(set(str(a).split(",")) & set(str(b).split(",")))


def _resolve_link(
    link_id: int, nodes_by_id: dict[int, dict], links: dict
) -> tuple[str, Any] | None:
    """Follow a link through Reroutes, bypassed nodes and PrimitiveNodes.

    Returns ("link", [origin_id, slot]) or ("value", v), or None when the input
    ends up unconnected. A bypassed node passes through the input at the same
    slot index if its type matches, else its first input of the link's type
    (the editor's rule).
    """
    seen: set[int] = set()
    while link_id is not None and link_id in links:
        origin_id, slot, link_type = links[link_id]
        if origin_id in seen:
            raise ValueError(f"link cycle through node {origin_id}")
        seen.add(origin_id)
        origin = nodes_by_id.get(origin_id)
        if origin is None:
            return None
        inputs = origin.get("inputs") or []
        if origin["type"] == "Reroute":
            link_id = inputs[0].get("link") if inputs else None
        elif origin["type"] == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            return ("value", values[0]) if values else None
        elif origin.get("mode") == MODE_BYPASS:
            candidates = [inputs[slot]] if slot < len(inputs) else []
            candidates += inputs
            link_id = next(
                (
                    i.get("link")
                    for i in candidates
                    if i.get("link") is not None and _types_match(i.get("type"), link_type)
                ),
                None,
            )
        else:
            return ("link", [str(origin_id), int(slot)])
    return None


def ui_to_api(workflow: dict) -> dict:
    """Convert an editor workflow (``nodes`` + ``links``) into an API prompt.

    Muted (mode 2) and bypassed (mode 4) nodes are left out; links through a
    bypassed node are reconnected to its matching input; inputs still pointing
    at a left-out node are dropped (as the editor does). Note, MarkdownNote,
    Reroute and PrimitiveNode are editor-only. Subgraphs and group nodes are
    not supported. Needs the node classes registered (``load_pack``).
    """
    _require_prepared()
    _ensure_builtin_nodes()
    import nodes

    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise NotImplementedError("workflows with subgraphs are not supported")
    nodes_by_id = {n["id"]: n for n in workflow["nodes"]}
    links = _links_table(workflow)
    prompt: dict[str, dict] = {}

    for node in workflow["nodes"]:
        node_type = node["type"]
        if node_type in _FRONTEND_ONLY or node.get("mode") in (MODE_NEVER, MODE_BYPASS):
            continue
        node_class = nodes.NODE_CLASS_MAPPINGS.get(node_type)
        if node_class is None:
            raise KeyError(
                f"node {node['id']}: unknown node type {node_type!r} "
                "(pack not loaded, or a subgraph/group node?)"
            )
        inputs: dict[str, Any] = {}

        values = node.get("widgets_values") or []
        pos = 0
        for name, extra, default in _widget_layout(node_class):
            if isinstance(values, dict):  # some nodes save {name: value}
                value = values.get(name, default)
            else:
                value = values[pos] if pos < len(values) else default
                pos += 1 + extra
            if value is not None:
                inputs[name] = _wrap_list(value)

        for slot in node.get("inputs") or []:
            # A widget turned into a socket keeps its value in widgets_values
            # (consumed above); a link on it overrides that value. A link that
            # resolves to nothing leaves the widget value (or no input) in place.
            if slot.get("link") is None:
                continue
            resolved = _resolve_link(slot["link"], nodes_by_id, links)
            if resolved is not None:
                name = (slot.get("widget") or {}).get("name") or slot["name"]
                kind, value = resolved
                inputs[name] = _wrap_list(value) if kind == "value" else value

        prompt[str(node["id"])] = {
            "class_type": node_type,
            "inputs": inputs,
            "_meta": {"title": node.get("title") or node_type},
        }

    # Drop inputs linked to nodes that were left out (muted, missing), as the editor does.
    for entry in prompt.values():
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt


def _wrap_list(value: Any) -> Any:
    """The API reserves lists for links; the editor wraps list widget values."""
    return {"__value__": value} if isinstance(value, list) else value


# --------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------


class FakeServer:
    """The subset of ``server.PromptServer`` that PromptExecutor and execute() touch."""

    def __init__(self) -> None:
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.sockets_metadata: dict = {}
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        self.messages.append((event, data))

    def queue_updated(self) -> None:
        pass

    def send_progress_text(self, text: str, node_id: str, sid: str | None = None) -> None:
        self.messages.append(("progress_text", {"node": node_id, "text": text}))


def _format_validation(error: dict, node_errors: dict) -> str:
    lines = [f"{error.get('message')}: {error.get('details')}"] if error else []
    for node_id, info in node_errors.items():
        for err in info.get("errors", []):
            lines.append(
                f"  node {node_id} ({info.get('class_type')}): "
                f"{err.get('message')}: {err.get('details')}"
            )
    return "\n".join(lines)


def validate_prompt(api_prompt: dict) -> tuple[str, list]:
    """Validate an API prompt the way ComfyUI does before queueing it (node types,
    links, widget values, model file names); return ``(prompt_id, outputs to run)``.
    Raises AssertionError naming every node that fails."""
    _require_prepared()
    _ensure_builtin_nodes()
    import execution

    prompt_id = str(uuid.uuid4())
    ok, error, good_outputs, node_errors = _run_async(
        execution.validate_prompt(prompt_id, api_prompt, None)
    )
    if not ok or node_errors:
        raise AssertionError("prompt failed validation:\n" + _format_validation(error, node_errors))
    return prompt_id, good_outputs


def new_executor():
    """A prompt executor as ComfyUI's server keeps one: its node cache lives with it."""
    import execution

    server = FakeServer()
    # cache_args is read unconditionally (poll(ram_headroom=cache_args["ram"])).
    return execution.PromptExecutor(
        server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0}
    )


def run_prompt(api_prompt: dict, extra_data: dict | None = None, executor=None) -> dict:
    """Validate and execute an API prompt in-process, on ``executor`` (a new one if
    None, so no node output is cached from an earlier run); return
    ``executor.history_result``.

    The result is ``{"outputs": {node_id: ui_dict}, "meta": {...}}``; for
    SaveImage, ``outputs[id]["images"]`` lists ``{"filename", "subfolder",
    "type"}`` relative to the output directory. ``"progress_text"`` maps each node
    that wrote text on itself in the editor to that text. Raises AssertionError on a
    validation error (any output failing, not only all of them) or on an
    execution error (node id, type, exception and traceback).
    """
    prompt_id, good_outputs = validate_prompt(api_prompt)
    executor = executor or new_executor()
    server = executor.server
    server.messages.clear()
    server.last_prompt_id = prompt_id
    _install_prompt_server(server)
    started = time.perf_counter()
    _run_async(executor.execute_async(api_prompt, prompt_id, extra_data or {}, good_outputs))
    logger.info("prompt executed in %.2fs", time.perf_counter() - started)
    if not executor.success:
        raise AssertionError(_format_execution_error(executor.status_messages))
    texts = {d["node"]: d["text"] for e, d in server.messages if e == "progress_text"}
    return {**executor.history_result, "progress_text": texts}


def _install_prompt_server(server: FakeServer) -> None:
    """Give ``server.PromptServer.instance`` a value if some node module imported it."""
    mod = sys.modules.get("server")
    prompt_server = getattr(mod, "PromptServer", None)
    if prompt_server is not None and isinstance(
        getattr(prompt_server, "instance", None), (FakeServer, type(None))
    ):
        prompt_server.instance = server


def _format_execution_error(messages: list[tuple[str, dict]]) -> str:
    for event, data in messages:
        if event == "execution_error":
            return (
                f"node {data['node_id']} ({data['node_type']}) raised "
                f"{data['exception_type']}: {data['exception_message'].strip()}\n"
                + "".join(data.get("traceback") or [])
            )
        if event == "execution_interrupted":
            return f"execution interrupted at node {data['node_id']} ({data['node_type']})"
    return f"execution failed; messages: {[e for e, _ in messages]}"
