"""Uncrop: inpainting and outpainting nodes for ComfyUI.

ComfyUI imports this package and calls :func:`comfy_entrypoint`. The node
modules are imported only then, so ``core`` and the CLI work without ComfyUI.
"""

WEB_DIRECTORY = None


async def comfy_entrypoint():
    from .nodes import UncropExtension, provide_samples

    provide_samples()  # here, not in on_load, which ComfyUI 0.8 and older never call
    return UncropExtension()
