"""What differs between the Blender versions Splatwork supports (5.0, 5.1, 5.2 LTS, 5.3), in one place.

Everything else in the add-on asks these questions instead of comparing version numbers, so a
feature is used where it exists and the older way is kept only where it must be:

* native Gaussian splats (``PointCloud.type = 'GAUSSIAN_SPLAT'``) arrived in 5.3;
* the ``FLOAT4`` attribute type (Blender's ``radiance:base``) in 5.2;
* ``PointCloud.resize`` in 5.1;
* geometry-nodes modifier inputs moved from ID properties (``mod[identifier]``) to
  ``mod.properties.inputs.<identifier>.value`` in 5.2;
* 5.3 deprecates ``Scene.compositing_node_group`` for a stack of compositor effects (removal
  planned for 6.0). ``use_nodes`` on materials and worlds is always on from 5.0 and is never set.
"""
from __future__ import annotations

import bpy


def _enum_items(struct, prop: str) -> set[str]:
    found = struct.bl_rna.properties.get(prop)
    return set(found.enum_items.keys()) if found is not None else set()


NATIVE_SPLATS = "GAUSSIAN_SPLAT" in _enum_items(bpy.types.PointCloud, "type")
FLOAT4 = "FLOAT4" in _enum_items(bpy.types.Attribute, "data_type")
POINTCLOUD_RESIZE = "resize" in bpy.types.PointCloud.bl_rna.functions


def _input_identifier(mod, name: str) -> str:
    return mod.node_group.interface.items_tree[name].identifier


def _modifier_properties(mod):
    """The 5.2+ interface that holds a nodes modifier's input values, or None on older Blender."""
    props = getattr(mod, "properties", None)
    return props if props is not None and hasattr(props, "inputs") else None


def modifier_input(mod, name: str) -> tuple[object, str]:
    """(owner, property) of a nodes modifier's input ``name``, as ``layout.prop`` and
    ``path_resolve`` take them."""
    identifier = _input_identifier(mod, name)
    props = _modifier_properties(mod)
    if props is not None:
        return getattr(props.inputs, identifier), "value"
    return mod, f'["{identifier}"]'


def get_modifier_input(mod, name: str):
    props = _modifier_properties(mod)
    if props is not None:
        return getattr(props.inputs, _input_identifier(mod, name)).value
    return mod[_input_identifier(mod, name)]


def set_modifier_input(mod, name: str, value) -> None:
    props = _modifier_properties(mod)
    if props is not None:
        getattr(props.inputs, _input_identifier(mod, name)).value = value
    else:
        mod[_input_identifier(mod, name)] = value


def modifier_input_path(mod, name: str) -> str:
    """The data path of the input's value from the object that owns the modifier (for drivers)."""
    identifier = _input_identifier(mod, name)
    if _modifier_properties(mod) is not None:
        return f'modifiers["{mod.name}"].properties.inputs.{identifier}.value'
    return f'modifiers["{mod.name}"]["{identifier}"]'


def set_compositing_tree(scene, tree) -> None:
    """Make ``tree`` what the scene's compositor runs: 5.3+ has a stack of compositor effects
    (``compositing_node_group`` is deprecated there), 5.0-5.2 one node group."""
    effects = getattr(scene, "compositor_effects", None)
    if effects is None:
        scene.compositing_node_group = tree
        return
    if tree is None:
        if effects.active is not None:
            effects.active.node_group = None
        return
    effect = next((e for e in effects if e.node_group is tree), None) or effects.active or effects.new(tree.name)
    effect.node_group = tree
    effect.enable_for_render = True
    effects.active = effect


def compositing_tree(scene):
    """The node tree the scene's compositor runs (the active effect's on 5.3+), or None."""
    effects = getattr(scene, "compositor_effects", None)
    if effects is None:
        return scene.compositing_node_group
    return effects.active.node_group if effects.active is not None else None
