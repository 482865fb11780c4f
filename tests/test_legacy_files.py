"""A .blend saved by Splatwork 0.1 on Blender 5.0.1 (splat layout 1: log scales, opacity logits and
unnormalised quaternions under ``scale``/``opacity``/``rotation``, and its own "Splatwork Splat
Preview" node group) opens, renders, exports and converts on every supported Blender.

``data/legacy_layout1.blend`` was made by commit a532ab6's own code (``splats_to_object`` then
``attach_preview``) on bpy 5.0.1: 64 splats of SH degree 1 with an int16 extra, a camera, 64x48;
``data/legacy_layout1.ply`` holds the same splats as written then.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import assert_splats_close, compat

DATA = Path(__file__).resolve().parent / "data"
NATIVE = compat.NATIVE_SPLATS


def _open(splatwork):
    bpy.ops.wm.open_mainfile(filepath=str(DATA / "legacy_layout1.blend"))
    return bpy.data.objects["Legacy Splats"]


def _alpha_coverage(render) -> float:
    pixels = render(bpy.context.scene, samples=4, resolution=(64, 48))
    return float((pixels[..., 3] > 0.05).mean())


def test_an_old_file_opens_renders_exports_and_converts(blender_with_splatwork, splatwork, render, tmp_path):
    api = splatwork.addon.splats
    formats = splatwork.bridge.formats
    source = formats.read_splats(DATA / "legacy_layout1.ply")
    obj = _open(splatwork)
    assert api.is_splat_object(obj) and api.is_legacy(obj)
    # Read exactly as stored: layout 1 kept every field raw.
    old = api.object_to_splats(obj)
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(old, name), getattr(source, name), err_msg=name)
    np.testing.assert_array_equal(old.extras["segment"], source.extras["segment"])

    # It still renders through the node group saved in the file (never rebuilt by this Splatwork).
    assert obj.modifiers["Splat Preview"].node_group.name == "Splatwork Splat Preview"
    bpy.context.scene.world = None
    assert _alpha_coverage(render) > 0.05

    # Export reads it too.
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    out = tmp_path / "legacy.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(out), use_selection=True, apply_transform=False) \
        == {"FINISHED"}
    exported = formats.read_splats(out)
    np.testing.assert_array_equal(exported.means, source.means)
    np.testing.assert_array_equal(exported.opacities, source.opacities)

    # Converting: Blender's splat attributes (native on 5.3+), the right modifier, nothing left over.
    assert bpy.ops.splatwork.convert_splats() == {"FINISHED"}
    assert not api.is_legacy(obj)
    assert_splats_close(api.object_to_splats(obj), source)
    names = set(obj.data.attributes.keys())
    assert {"scale", "rotation", "radiance:base", "radiance:sh_0", "extra:segment"} <= names
    assert not {"opacity", "sh_dc", "sh_rest_1"} & names
    mod = api.splat_modifier(obj)
    if NATIVE:
        assert obj.data.type == "GAUSSIAN_SPLAT" and mod.name == "Splat Controls"
        assert "Splat Preview" not in obj.modifiers
    else:
        assert mod.name == "Splat Preview" and mod.node_group.name == "Splatwork Quad Preview"
    assert len(bpy.data.pointclouds) == 1
    assert _alpha_coverage(render) > 0.05


@pytest.mark.skipif(not NATIVE, reason="native Gaussian splats need Blender 5.3+")
def test_an_old_object_is_legacy_until_converted(blender_with_splatwork, splatwork):
    """Layout 1 put log scales under Blender's ``scale``: Splatwork calls such objects legacy (the
    panel offers Convert) rather than treating them as native splats with Blender's meanings."""
    obj = _open(splatwork)
    api = splatwork.addon.splats
    assert api.is_legacy(obj) and not api.is_native(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    assert bpy.ops.splatwork.convert_splats() == {"FINISHED"}
    scale = np.empty(len(obj.data.points) * 3, np.float32)
    obj.data.attributes["scale"].data.foreach_get("vector", scale)
    assert scale.min() > 0, "Blender's scale is linear: no log-scales survive the conversion"
