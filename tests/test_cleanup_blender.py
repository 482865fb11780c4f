"""The cleanup tools in Blender: selections on Blender's own point cloud selection, hide through the
Splat Controls, delete and separate keeping the rest bit for bit, export of what is left visible,
the panel, the command line's --cleanup, and bad input. On every supported Blender (native splats
on 5.3, the geometry-nodes preview before).

Undo itself cannot run here (``bpy.ops.ed.undo`` needs a window); the operators' UNDO flag is checked.
"""
from __future__ import annotations

import types

import bpy
import numpy as np
import pytest
from conftest import shared_data

from bridge.formats import SplatSet, read_splats


def synthetic_splats(n=3000, seed=0) -> SplatSet:
    """A shell of splats, a few of them faint, huge or far away, with an extra attribute."""
    rng = np.random.default_rng(seed)
    s = SplatSet.empty(n, 1)
    d = rng.normal(size=(n, 3))
    s.means[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
    s.means[:20] *= 8.0  # far
    s.scales[:] = np.log(rng.uniform(0.01, 0.03, (n, 3)))
    s.scales[20:40] = np.log(2.0)  # huge
    s.quats[:] = rng.normal(size=(n, 4))
    s.opacities[:] = rng.uniform(1.0, 4.0, n)
    s.opacities[40:70] = -6.0  # faint (alpha 0.0025)
    s.sh_dc[:] = rng.normal(size=(n, 3))
    s.sh_rest[:] = rng.normal(size=(n, 3, 3))
    s.extras["segment"] = np.arange(n, dtype=np.int16)
    return s


def make_object(splatwork, splats=None, name="Splats"):
    api = splatwork.addon.splats
    obj = api.splats_to_object(splats if splats is not None else synthetic_splats(), name)
    api.attach_preview(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def selection(obj) -> np.ndarray:
    attr = obj.data.attributes.get(".selection")
    out = np.empty(len(obj.data.points), bool)
    if attr is None:
        out[:] = True
    else:
        attr.data.foreach_get("value", out)
    return out


def raw_attributes(obj) -> dict[str, np.ndarray]:
    """Every point attribute except the cleanup state, as raw arrays."""
    raw = splat_module()._RAW
    out = {}
    for a in obj.data.attributes:
        if a.name in (".selection", ".splatwork_hidden") or a.data_type not in raw:
            continue
        key, dtype, width = raw[a.data_type]
        values = np.empty(len(obj.data.points) * width, dtype)
        a.data.foreach_get(key, values)
        out[a.name] = values.reshape(len(obj.data.points), width)
    return out


def splat_module():
    import importlib

    return importlib.import_module("bl_ext.user_default.splatwork.addon.splats.pointcloud")


def assert_same_splats(got: SplatSet, want: SplatSet) -> None:
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.extras.keys() == want.extras.keys()
    for name in got.extras:
        np.testing.assert_array_equal(got.extras[name], want.extras[name], err_msg=name)


def test_every_operator_registers_and_undoes(blender_with_splatwork):
    names = ["select_splats_opacity", "select_splats_scale", "select_splats_distance", "select_splats_crop",
             "select_splats_unseen", "select_splats_outliers", "select_all_splats", "hide_splats", "reveal_splats",
             "delete_splats", "separate_splats"]
    for name in names:
        op = getattr(bpy.types, f"SPLATWORK_OT_{name}")
        assert {"REGISTER", "UNDO"} <= set(op.bl_options), name


def test_selections_write_blenders_point_cloud_selection(blender_with_splatwork, splatwork):
    obj = make_object(splatwork)
    assert bpy.ops.splatwork.select_splats_opacity(threshold=0.05) == {"FINISHED"}
    assert np.flatnonzero(selection(obj)).tolist() == list(range(40, 70))
    assert obj.data.attributes[".selection"].data_type == "BOOLEAN"
    bpy.ops.splatwork.select_splats_scale(by="SIZE", size=1.0, mode="EXTEND")
    assert np.flatnonzero(selection(obj)).tolist() == list(range(20, 70))
    bpy.ops.splatwork.select_splats_distance(by="RADIUS", radius=4.0, mode="EXTEND")
    assert np.flatnonzero(selection(obj)).tolist() == list(range(70))
    bpy.ops.splatwork.select_splats_scale(by="PERCENT", percent=20 / 3000 * 100, mode="SUBTRACT")
    assert np.flatnonzero(selection(obj)).tolist() == [*range(20), *range(40, 70)]
    bpy.ops.splatwork.select_splats_distance(by="PERCENT", percent=1.0, mode="INTERSECT")
    assert np.flatnonzero(selection(obj)).tolist() == list(range(20))
    bpy.ops.splatwork.select_all_splats(action="INVERT")
    assert np.flatnonzero(~selection(obj)).tolist() == list(range(20))
    out = splatwork.addon.splats.select_splats(obj, "OUTLIERS", std_ratio=3.0)
    assert set(range(20)) <= set(np.flatnonzero(selection(obj))), "the far splats are isolated"
    assert out.total == 3000 and out.count == selection(obj).sum()
    assert out.message.startswith(f"Selected {out.count:,} of 3,000 splats")


def test_edit_mode_selection_is_the_same_selection(blender_with_splatwork, splatwork):
    """A selection made in Blender's point cloud edit mode is what hide/delete act on, and theirs is
    what edit mode shows and deletes."""
    obj = make_object(splatwork)
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.pointcloud.select_all(action="DESELECT")
    bpy.ops.pointcloud.select_random(seed=3, probability=0.1)
    picked = selection(obj)
    assert 0 < picked.sum() < 3000
    assert bpy.ops.splatwork.hide_splats() == {"FINISHED"}  # from edit mode, on the hand-made selection
    bpy.ops.object.mode_set(mode="OBJECT")
    np.testing.assert_array_equal(splatwork.addon.splats.pointcloud.read_hidden(obj), picked)
    assert not selection(obj).any(), "hidden splats are deselected"

    bpy.ops.splatwork.reveal_splats()
    bpy.ops.splatwork.select_splats_opacity(threshold=0.05)
    before = obj.data.attributes["extra:segment"]
    assert before is not None
    bpy.ops.object.mode_set(mode="EDIT")
    assert bpy.ops.pointcloud.delete() == {"FINISHED"}  # Blender's own delete, on our selection
    bpy.ops.object.mode_set(mode="OBJECT")
    assert len(obj.data.points) == 2970
    segment = np.empty(2970, np.int32)
    obj.data.attributes["extra:segment"].data.foreach_get("value", segment)
    assert segment.tolist() == [*range(40), *range(70, 3000)]

    bpy.ops.object.mode_set(mode="EDIT")  # our delete from edit mode
    bpy.ops.splatwork.select_splats_scale(by="SIZE", size=1.0)
    assert bpy.ops.splatwork.delete_splats() == {"FINISHED"}
    assert obj.mode == "EDIT" and len(obj.data.points) == 2950
    bpy.ops.object.mode_set(mode="OBJECT")


def evaluated_count(obj) -> int:
    """Splats the object's modifier lets through (the preview draws points with Fast Points)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    depsgraph.update()
    ev = obj.evaluated_get(depsgraph)
    data = ev.data
    if hasattr(data, "points"):
        return len(data.points)
    return len(ev.to_mesh().vertices)


def test_hide_goes_through_the_splat_controls_and_reveal_undoes_it(blender_with_splatwork, splatwork):
    api = splatwork.addon.splats
    compat = splatwork.addon.common.compat
    obj = make_object(splatwork)
    mod = api.splat_modifier(obj)
    if "Fast Points" in {i.name for i in mod.node_group.interface.items_tree if i.item_type == "SOCKET"}:
        compat.set_modifier_input(mod, "Fast Points", True)  # points, not quads, to count
    full = evaluated_count(obj)
    before = raw_attributes(obj)
    api.select_splats(obj, "SCALE", by="SIZE", size=1.0)  # (the faint ones are below what 3DGS draws)
    out = api.hide_splats(obj)
    assert out.message == "Hid 20 of 3,000 splats (20 hidden in all)"
    assert len(obj.data.points) == 3000, "hiding deletes nothing"
    assert evaluated_count(obj) == full - 20
    assert api.shown_in_renders(obj).sum() == 2980
    with pytest.raises(api.cleanup_tools.CleanupError, match="no selected visible splats"):
        api.hide_splats(obj)  # the hidden ones were deselected
    out = api.reveal_splats(obj)
    assert out.message == "Revealed 20 of 3,000 splats" and evaluated_count(obj) == full
    assert np.flatnonzero(selection(obj)).tolist() == list(range(20, 40)), "revealed splats come back selected"
    assert api.shown_in_renders(obj) is None
    after = raw_attributes(obj)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


@pytest.mark.parametrize("how", ["delete", "separate"])
def test_delete_and_separate_keep_every_other_splat_bit_for_bit(blender_with_splatwork, splatwork, how):
    api = splatwork.addon.splats
    obj = make_object(splatwork)
    obj.data.materials.clear()
    before = raw_attributes(obj)
    splats = api.object_to_splats(obj)
    api.select_splats(obj, "OPACITY", threshold=0.05)
    if how == "delete":
        result = bpy.ops.splatwork.delete_splats()
        new = None
    else:
        result = bpy.ops.splatwork.separate_splats()
        new = bpy.data.objects["Splats Separated"]
    assert result == {"FINISHED"}
    keep = np.ones(3000, bool)
    keep[40:70] = False
    assert len(obj.data.points) == 2970 and obj.name == "Splats"
    after = raw_attributes(obj)
    assert before.keys() == after.keys(), "every attribute is kept"
    for name in before:
        np.testing.assert_array_equal(after[name], before[name][keep], err_msg=name)
    assert_same_splats(api.object_to_splats(obj), splats.subset(keep))
    assert api.splat_modifier(obj) is not None
    if new is not None:
        assert len(new.data.points) == 30 and api.splat_modifier(new) is not None
        assert_same_splats(api.object_to_splats(new), splats.subset(~keep))
        assert np.allclose(np.array(new.matrix_world), np.array(obj.matrix_world))


def test_export_writes_exactly_the_splats_left_visible(blender_with_splatwork, splatwork, tmp_path):
    """Imported real splats, cleaned with the operators, exported: the count, and every remaining
    splat bit for bit as the object held it."""
    api = splatwork.addon.splats
    path = shared_data("splats", "plush_dog.ply")
    bpy.ops.splatwork.import_splats(filepath=str(path))
    obj = bpy.context.active_object
    total = len(obj.data.points)
    reference = tmp_path / "all.ply"  # the export before cleanup: what each remaining splat must stay
    assert bpy.ops.splatwork.export_splats(filepath=str(reference), apply_transform=False) == {"FINISHED"}
    original = read_splats(reference)
    assert len(original) == total
    assert bpy.ops.splatwork.select_splats_opacity(threshold=0.1) == {"FINISHED"}
    assert bpy.ops.splatwork.select_splats_outliers(std_ratio=2.5, mode="EXTEND") == {"FINISHED"}
    chosen = selection(obj).copy()
    assert 0 < chosen.sum() < total
    assert bpy.ops.splatwork.hide_splats() == {"FINISHED"}
    out = tmp_path / "clean.ply"
    assert bpy.ops.splatwork.export_splats(filepath=str(out), apply_transform=False) == {"FINISHED"}
    written = read_splats(out)
    assert len(written) == total - chosen.sum()
    assert_same_splats(written, original.subset(~chosen))
    # Everything when asked, and the same file after a destructive delete of the same splats.
    assert bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "every.ply"), apply_transform=False,
                                           visible_only=False) == {"FINISHED"}
    assert_same_splats(read_splats(tmp_path / "every.ply"), original)
    api.reveal_splats(obj)
    bpy.ops.splatwork.delete_splats()
    assert len(obj.data.points) == total - chosen.sum()
    bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "deleted.ply"), apply_transform=False)
    assert_same_splats(read_splats(tmp_path / "deleted.ply"), original.subset(~chosen))


def test_export_leaves_out_what_the_controls_hide(blender_with_splatwork, splatwork, tmp_path):
    api = splatwork.addon.splats
    compat = splatwork.addon.common.compat
    obj = make_object(splatwork)
    compat.set_modifier_input(api.splat_modifier(obj), "Opacity Threshold", 0.05)
    assert bpy.ops.splatwork.add_crop_box() == {"FINISHED"}
    box = bpy.data.objects["Splats Crop Box"]
    box.scale = (1.5, 1.5, 1.5)
    box.location = (0, 0, 0)
    bpy.context.view_layer.update()
    bpy.ops.splatwork.select_splats_crop()
    outside = selection(obj)
    assert np.flatnonzero(outside).tolist() == list(range(20))
    bpy.ops.splatwork.export_splats(filepath=str(tmp_path / "c.ply"), apply_transform=False)
    assert len(read_splats(tmp_path / "c.ply")) == 3000 - 20 - 30


def test_unseen_by_the_training_cameras(blender_with_splatwork, splatwork):
    """Cameras of an imported COLMAP model all looking at the shell: the far splats outside every
    view are selected, none of the shell."""
    from bridge.formats.cameras import Camera, Reconstruction, View

    api = splatwork.addon.splats
    obj = make_object(splatwork)
    with pytest.raises(api.cleanup_tools.CleanupError, match="no training cameras"):
        api.select_splats(obj, "UNSEEN")
    views = []
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, 8, endpoint=False)):
        centre = np.array([4 * np.cos(angle), 4 * np.sin(angle), 0.0])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        views.append(View(i + 1, f"v{i}.png", 1, R, -R @ centre))
    rec = Reconstruction({1: Camera.pinhole(1, 64, 64, 40.0, 40.0, 32.0, 32.0)}, views,
                         np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), np.zeros(0, int))
    import tempfile

    from bridge.formats import colmap

    with tempfile.TemporaryDirectory() as tmp:
        colmap.write_model(rec, tmp)
        assert bpy.ops.splatwork.import_colmap(model_dir=tmp, world="KEEP", backgrounds=False, points=False,
                                               animated_camera=False) == {"FINISHED"}
    obj.matrix_world.identity()
    bpy.context.view_layer.objects.active = obj
    out = api.select_splats(obj, "UNSEEN", test="FRUSTUM")
    chosen = np.flatnonzero(selection(obj))
    assert out.count == len(chosen) and len(chosen) > 0
    assert set(chosen) <= set(range(20)), "only far splats are unseen"
    api.select_splats(obj, "UNSEEN", test="BEHIND")
    assert not selection(obj).any(), "every splat is in front of some camera"


def test_bad_input_is_a_clear_message_and_changes_nothing(blender_with_splatwork, splatwork, capsys):
    api = splatwork.addon.splats
    obj = make_object(splatwork)
    before = raw_attributes(obj)
    errors = api.cleanup_tools.CleanupError

    with pytest.raises(errors, match=r"opacity threshold must be a number in \[0, 1\], got 1.5"):
        api.select_splats(obj, "OPACITY", threshold=1.5)
    with pytest.raises(errors, match="percentage must be a number"):
        api.select_splats(obj, "SCALE", by="PERCENT", percent=120)
    with pytest.raises(errors, match="neighbour count"):
        api.select_splats(obj, "OUTLIERS", neighbours=0)
    with pytest.raises(errors, match="OPACITY takes threshold, not treshold"):
        api.select_splats(obj, "OPACITY", treshold=0.1)
    with pytest.raises(errors, match="criterion must be one of"):
        api.select_splats(obj, "FLOATERS")
    assert ".selection" not in obj.data.attributes
    # A selection that would remove every splat (no selection attribute means all, as in Blender).
    with pytest.raises(errors, match="would remove every splat"):
        api.delete_splats(obj)
    for op, words in ((bpy.ops.splatwork.delete_splats, "would remove every splat"),
                      (bpy.ops.splatwork.hide_splats, "would hide every splat"),
                      (bpy.ops.splatwork.separate_splats, "would leave it empty")):
        with pytest.raises(RuntimeError, match=words):  # what an operator's ERROR report is under bpy
            op()
    with pytest.raises(errors, match="would hide every splat"):
        api.hide_splats(obj)
    api.select_all_splats(obj, "DESELECT")
    with pytest.raises(errors, match="no selected splats .* to delete"):
        api.delete_splats(obj)
    with pytest.raises(errors, match="has no crop box"):
        api.select_splats(obj, "CROP")
    assert len(obj.data.points) == 3000 and ".splatwork_hidden" not in obj.data.attributes
    after = raw_attributes(obj)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    # An empty splat object, a plain point cloud, a splat object without opacity.
    empty = make_object(splatwork, SplatSet.empty(0), "Empty")
    with pytest.raises(errors, match="'Empty' has no splats"):
        api.select_splats(empty, "OPACITY", threshold=0.1)
    with pytest.raises(RuntimeError, match="'Empty' has no splats"):
        bpy.ops.splatwork.select_splats_opacity()
    plain = api.splats_to_object(SplatSet.empty(5), "Plain")
    for key in list(plain.data.keys()):
        del plain.data[key]
    plain.data.attributes.remove(plain.data.attributes["radiance:base"])
    if getattr(plain.data, "type", "POINTS") != "POINTS":
        plain.data.type = "POINTS"
    with pytest.raises(api.SplatLayoutError, match="'Plain' is not a splat object"):
        api.select_splats(plain, "OPACITY", threshold=0.1)
    bpy.context.view_layer.objects.active = plain
    assert not bpy.ops.splatwork.select_splats_opacity.poll()
    faded = make_object(splatwork, SplatSet.empty(5), "NoOpacity")
    faded.data.attributes.remove(faded.data.attributes["radiance:base"])
    with pytest.raises(api.SplatLayoutError, match="'NoOpacity' has no opacity"):
        api.select_splats(faded, "OPACITY", threshold=0.1)
    assert ".selection" not in faded.data.attributes


class RecordingLayout:
    """Enough of UILayout to draw the cleanup panel and redo panels: checks every prop exists on
    its data and every operator is registered."""

    def __init__(self, calls=None):
        self.calls = calls if calls is not None else []

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.calls)

    row = column = box = split = _child

    def separator(self, **kwargs):
        pass

    def label(self, text="", icon="NONE", **kwargs):
        self.calls.append(("label", text, icon))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{data!r} has no property {name!r}"
        self.calls.append(("prop", name))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        assert hasattr(bpy.types, f"{module.upper()}_OT_{name}"), f"no operator {idname}"
        self.calls.append(("operator", idname))
        return type("Props", (), {})()


def test_panel_and_redo_panels_draw_with_a_live_count(blender_with_splatwork, splatwork):
    cleanup = splatwork.addon.splats.cleanup_tools
    obj = make_object(splatwork)
    splatwork.addon.splats.select_splats(obj, "OPACITY", threshold=0.05)
    layout = RecordingLayout()
    panel = type("P", (), {"layout": layout})()
    cleanup.SPLATWORK_PT_cleanup.draw(panel, bpy.context)
    assert ("label", "Selected 30 of 3,000", "RESTRICT_SELECT_OFF") in layout.calls
    assert ("operator", "splatwork.delete_splats") in layout.calls
    icons = bpy.types.UILayout.bl_rna.functions["prop"].parameters["icon"].enum_items.keys()
    for cls in cleanup.CLASSES:  # each redo panel (Adjust Last Operation)
        if cls is cleanup.SPLATWORK_PT_cleanup:
            continue
        props = bpy.context.window_manager.operator_properties_last(cls.bl_idname)
        values = {name: getattr(props, name) for name in props.bl_rna.properties.keys() if name != "rna_type"}
        fake = types.SimpleNamespace(layout=RecordingLayout(), bl_rna=props.bl_rna, **values)
        for helper in ("settings", "shown"):
            if hasattr(cls, helper):
                setattr(fake, helper, getattr(cls, helper).__get__(fake))
        cls.draw(fake, bpy.context)
        assert any(call[0] == "label" and call[1].startswith("Selected ") for call in fake.layout.calls), cls
    for mode in cleanup._MODE_ITEMS:
        assert mode[3] in icons


def test_cli_cleans_an_imported_file_and_exports_it(blender_with_splatwork, splatwork, tmp_path, capsys):
    cli = splatwork.addon.headless.cli
    assert cli.main(["--help"]) == 0
    assert "--cleanup KEY=VALUE,..." in capsys.readouterr().out
    src = shared_data("splats", "plush_dog.ply")
    out = tmp_path / "clean.ply"
    code = cli.main(["--splats", str(src), "--cleanup", "opacity=0.05,outliers=2.5", "--export", str(out),
                     "--blend", str(tmp_path / "clean.blend")])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "splatwork: cleanup: Selected" in text.out
    hid = [line for line in text.out.splitlines() if "cleanup: Hid" in line]
    assert len(hid) == 1
    count = int(hid[0].split("Hid ")[1].split(" of")[0].replace(",", ""))
    assert f" of {len(read_splats(src)):,} splats" in hid[0] and count > 0
    assert len(read_splats(out)) == len(read_splats(src)) - count
    assert f"exported {len(read_splats(src)) - count:,} splats" in text.out
    assert (tmp_path / "clean.blend").is_file()


@pytest.mark.parametrize("argv, words", [
    (["--cleanup", "opacity=2"], "--cleanup: opacity must be a number in (0, 1]"),
    (["--cleanup", "floaters=2"], "unknown key 'floaters'"),
    (["--cleanup", "distance=100%"], "would hide every splat"),
    (["--cleanup", "unseen=frustum"], "no training cameras"),
])
def test_cli_bad_cleanup_is_exit_2_with_the_reason(blender_with_splatwork, splatwork, tmp_path, capsys, argv, words):
    src = shared_data("splats", "plush_dog.ply")
    out = tmp_path / "x.ply"
    code = splatwork.addon.headless.cli.main(["--splats", str(src), *argv, "--export", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.ends_only
def test_cli_cleans_after_training_and_exports(blender_with_splatwork, splatwork, synthetic_scene, tmp_path, capsys):
    """Train (a few steps), then --cleanup with every selection the command line has, deleting, and
    export: the file holds exactly the splats left, each one of the trained splats."""
    out, exported = tmp_path / "run", tmp_path / "clean.ply"
    code = splatwork.addon.headless.cli.main([
        "--model", str(synthetic_scene / "sparse" / "0"), "--images", str(synthetic_scene / "images"),
        "--out", str(out), "--preset", "fast", "--steps", "4", "--downscale", "2", "--sh-degree", "0",
        "--device", "cpu", "--export", str(exported),
        "--cleanup", "opacity=0.2,scale=1%,distance=1%,unseen=frustum,outliers=2,neighbours=8,action=delete"])
    text = capsys.readouterr()
    assert code == 0, text.err[-3000:]
    trained = read_splats(out / "splats.ply")
    removed = [line for line in text.out.splitlines() if "cleanup: Removed" in line]
    assert len(removed) == 1 and f" of {len(trained):,} splats" in removed[0]
    gone = int(removed[0].split("Removed ")[1].split(" of")[0].replace(",", ""))
    assert gone > 0 and text.out.count("cleanup: Selected") == 5
    written = read_splats(exported)
    assert len(written) == len(trained) - gone
    trained_rows = {row.tobytes() for row in trained.means}
    assert all(row.tobytes() in trained_rows for row in written.means), "only trained splats, positions exact"
    obj = bpy.context.scene.splatwork_training.result_object
    assert len(obj.data.points) == len(written)
