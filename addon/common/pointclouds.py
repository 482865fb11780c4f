"""Making point-cloud data-blocks, which Blender 5.0's Python API cannot size directly.

The points go into a mesh's vertices (which can be sized) and Blender's own converter turns the mesh
object into a point-cloud object, sharing the arrays rather than copying them. Used by the splat
objects and by the COLMAP sparse points.
"""
from __future__ import annotations

import bpy


def convert_to_pointcloud(holder, scene):
    """Turn the mesh object ``holder`` (linked to ``scene``) into a point-cloud object; returns its data.

    Raises RuntimeError when Blender refuses; the caller owns (and cleans up) the holder and its mesh.
    """
    n = len(holder.data.vertices)
    with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0], active_object=holder,
                                   object=holder, selected_objects=[holder], selected_editable_objects=[holder]):
        result = bpy.ops.object.convert(target="POINTCLOUD")
    if result != {"FINISHED"} or holder.type != "POINTCLOUD":
        raise RuntimeError(f"Blender could not convert {n} points into a point cloud")
    pc = holder.data
    for attr in [a for a in pc.attributes if a.name.startswith(".select")]:  # the converter's selection state
        pc.attributes.remove(attr)
    return pc


def pointcloud_through_mesh(name: str, n: int, scene, fill):
    """A new point cloud of ``n`` points made through a mesh: ``fill(mesh)`` writes the vertices'
    attributes, then Blender's converter turns the mesh into the point cloud (returned). The mesh and
    its holder object are removed whatever happens; an exception from ``fill`` or the converter passes on.
    """
    mesh = bpy.data.meshes.new(name)
    holder = None
    try:
        mesh.vertices.add(n)
        fill(mesh)
        holder = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(holder)
        return convert_to_pointcloud(holder, scene)
    finally:
        if holder is not None:
            bpy.data.objects.remove(holder)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
