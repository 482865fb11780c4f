"""The harness itself: a clean Blender per test, and a Cycles render that returns real pixels."""
from __future__ import annotations

import os

import bpy
import numpy as np


def test_blender_uses_throwaway_user_folders(blender):
    user = bpy.utils.resource_path("USER")
    assert os.environ["BLENDER_USER_RESOURCES"] in user
    assert os.path.expanduser("~/.config/blender") not in user


def test_clean_blender_is_empty(blender):
    assert len(bpy.data.objects) == 0
    bpy.ops.mesh.primitive_cube_add()
    assert len(bpy.data.objects) == 1


def test_cycles_render_returns_real_pixels(blender, render):
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    plane = bpy.context.object
    mat = bpy.data.materials.new("red")
    emission = mat.node_tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (1.0, 0.0, 0.0, 1.0)
    mat.node_tree.links.new(emission.outputs[0], mat.node_tree.nodes["Material Output"].inputs["Surface"])
    plane.data.materials.append(mat)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location = (0, 0, 3)
    scene.camera = cam
    scene.view_settings.view_transform = "Standard"
    scene.render.film_transparent = True
    pixels = render(samples=4, resolution=(32, 24))
    assert pixels.shape == (24, 32, 4)
    centre = pixels[12, 16]
    assert centre[0] > 0.95 and centre[1] < 0.05 and centre[3] > 0.99
    assert np.all(pixels[0, 0, 3] < 0.01)  # a corner sees past the plane: transparent film
