"""Uncrop's engine: plain torch code, no ComfyUI import.

Conventions used everywhere in this package:
- IMAGE is a float tensor ``[B, H, W, C]`` in 0..1 (ComfyUI's layout).
- MASK is a float tensor ``[B, H, W]`` in 0..1 where **1 marks the area to fill**.
"""
