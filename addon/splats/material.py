"""The splat material: Gaussian falloff times opacity over the SH colour, emissive and unlit.

It reads what the preview nodes store (``splat_uv``, ``splat_falloff``, ``splat_color``), so it stays
small and is shared by every splat object. The colour is emitted at strength 1, so with the view
transform "Standard" a fully opaque splat renders exactly its trained sRGB colour.
"""
from __future__ import annotations

import bpy

from .node_builder import NodeBuilder

MATERIAL_NAME = "Splatwork Splat"
VERSION_KEY = "splatwork_material_version"
MATERIAL_VERSION = 1
MAX_ALPHA = 0.99  # 3DGS clamps each splat's alpha so that nothing is ever fully opaque
MIN_ALPHA = 1.0 / 255.0  # and skips what is fainter than one 8-bit step


def ensure_material():
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None and mat.get(VERSION_KEY) == MATERIAL_VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(MATERIAL_NAME)
    if mat.node_tree is None:  # Blender < 5.0 starts materials without nodes
        mat.use_nodes = True
    _build(mat.node_tree)
    # EEVEE: blend in the order the preview sorted the quads, every layer, both faces.
    mat.surface_render_method = "BLENDED"
    mat.use_transparency_overlap = True
    mat.use_backface_culling = False
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    mat[VERSION_KEY] = MATERIAL_VERSION
    return mat


def _build(tree) -> None:
    tree.nodes.clear()
    b = NodeBuilder(tree)

    def attribute(name):
        return b.out(b.node("ShaderNodeAttribute", attribute_type="GEOMETRY", attribute_name=name), "Vector")

    u, v, _ = b.separate(attribute("splat_uv"))
    reach_u, reach_v, alpha = b.separate(attribute("splat_falloff"))
    exponent = b.math("ADD", b.math("MULTIPLY", b.math("MULTIPLY", u, u), reach_u),
                      b.math("MULTIPLY", b.math("MULTIPLY", v, v), reach_v))
    weight = b.math("MULTIPLY", alpha, b.math("EXPONENT", b.math("MULTIPLY", exponent, -1.0)))
    visible = b.math("GREATER_THAN", weight, MIN_ALPHA)
    coverage = b.math("MULTIPLY", b.math("MINIMUM", weight, MAX_ALPHA), visible)

    emission = b.node("ShaderNodeEmission", {"Color": attribute("splat_color"), "Strength": 1.0})
    transparent = b.node("ShaderNodeBsdfTransparent")
    mix = b.node("ShaderNodeMixShader", {0: coverage})
    b.links.new(transparent.outputs[0], mix.inputs[1])
    b.links.new(emission.outputs[0], mix.inputs[2])
    output = b.node("ShaderNodeOutputMaterial")
    b.links.new(mix.outputs[0], output.inputs["Surface"])

