"""Cleanup tools for splat objects: select splats (faint, huge, far, unseen, isolated), then hide,
delete, invert or separate them. Native 5.3 splats and the 5.0-5.2 preview alike.

The selection is Blender's own: the ``.selection`` point attribute that point cloud edit mode shows
and edits (no attribute means every point is selected, as Blender has it), so a selection made by
hand in edit mode is the one these tools extend, hide or delete, and theirs is the one edit mode
shows. Hiding is non-destructive: ``.splatwork_hidden`` marks splats the Splat Controls modifier
leaves out (and export too) until Reveal; deleting removes the points (Ctrl+Z brings them back).

The math is ``bridge.formats.cleanup`` (numpy only); this module reads the object's arrays, calls it
and writes the result. Python API (each returns a :class:`Outcome` and raises CleanupError or
SplatLayoutError, with the object and the problem named, before changing anything)::

    select_splats(obj, criterion, mode="REPLACE", scene=None, **settings)
    hide_splats(obj, unselected=False)   reveal_splats(obj, select=True)
    delete_splats(obj)                   separate_splats(obj) -> Outcome (.new_object)
    select_all_splats(obj, action)       # SELECT, DESELECT, INVERT
    cleanup(obj, spec, scene=None)       # a parsed --cleanup value (bridge.formats.cleanup)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

from ...bridge.formats import cleanup as sel
from ...bridge.formats.cleanup import CleanupError
from ..common.reports import failure
from .controls import attach_splat_modifier, crop_box, splat_modifier, to_crop_box
from .pointcloud import (
    SplatLayoutError,
    describe_splat_objects,
    is_splat_object,
    point_count,
    read_alphas,
    read_hidden,
    read_positions,
    read_scales,
    read_selection,
    remove_points,
    write_hidden,
    write_selection,
)

CRITERIA = ("OPACITY", "SCALE", "DISTANCE", "CROP", "UNSEEN", "OUTLIERS")
SETTINGS = {"OPACITY": {"threshold"}, "SCALE": {"by", "percent", "size"},
            "DISTANCE": {"centre", "by", "percent", "radius"}, "CROP": set(), "UNSEEN": {"test", "margin"},
            "OUTLIERS": {"std_ratio", "neighbours"}}


@dataclass
class Outcome:
    """What a cleanup call did, in numbers and in the words its report uses."""

    count: int  # splats selected, hidden, revealed, removed or separated
    total: int  # splats in the object before the call
    message: str
    new_object: object = None
    details: dict = field(default_factory=dict)


def _n(value: int) -> str:
    return f"{value:,}"


def _check_object(obj) -> int:
    if obj is None:
        raise CleanupError("no active object: select a splat object")
    if not is_splat_object(obj):
        raise SplatLayoutError(f"{obj.name!r} is not a splat object: Splatwork looks for {describe_splat_objects()}")
    n = point_count(obj)
    if n == 0:
        raise CleanupError(f"{obj.name!r} has no splats")
    return n


def _world_matrix(obj) -> np.ndarray:
    return np.array(obj.matrix_world, np.float64)


def _scale_factor(matrix: np.ndarray) -> float:
    """The object's own scale as one factor (the cube root of its volume change)."""
    return float(abs(np.linalg.det(matrix[:3, :3])) ** (1.0 / 3.0))


def training_views(scene) -> list[sel.View]:
    """The still cameras of the scene's imported COLMAP collections (the training cameras), as views."""
    from ..cameras.exporting import camera_to_colmap, exportable_cameras

    cameras = exportable_cameras(o for o in scene.objects if o.type == "CAMERA" and o.data.splatwork_colmap.is_colmap)
    views = []
    for obj in sorted(cameras, key=lambda o: o.name):
        try:
            camera, R, t = camera_to_colmap(obj, scene)
        except ValueError:  # an orthographic or panoramic camera: no pinhole frustum
            continue
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, t
        views.append(sel.View(camera.K(), w2c, camera.width, camera.height))
    return views


def scene_centre(obj, scene, centre: str, world_points: np.ndarray) -> np.ndarray:
    if centre == "MEDIAN":
        return sel.robust_centre(world_points)
    if centre == "CAMERAS":
        views = training_views(scene)
        if not views:
            raise CleanupError("the scene has no training cameras (import a COLMAP model) to centre on")
        return np.mean([v.centre() for v in views], axis=0)
    if centre == "CURSOR":
        return np.array(scene.cursor.location, np.float64)
    if centre == "ORIGIN":
        return np.zeros(3)
    raise CleanupError(f"centre must be MEDIAN, CAMERAS, CURSOR or ORIGIN, got {centre!r}")


def _criterion_mask(obj, scene, criterion: str, visible: np.ndarray, s: dict) -> tuple[np.ndarray, str]:
    """(mask over all splats, words) for one criterion; only visible splats count and can be picked."""
    def world_positions():
        return sel.transform_points(_world_matrix(obj), read_positions(obj)[visible])

    def spread(values_visible):
        out = np.zeros(len(visible), bool)
        out[visible] = values_visible
        return out

    if criterion == "OPACITY":
        threshold = s.get("threshold", 0.05)
        return spread(sel.below_opacity(read_alphas(obj)[visible], threshold)), f"opacity below {threshold:g}"
    if criterion == "SCALE":
        sizes = sel.splat_size(read_scales(obj)[visible], _scale_factor(_world_matrix(obj)))
        if s.get("by", "PERCENT") == "PERCENT":
            percent = s.get("percent", 1.0)
            return spread(sel.largest(sizes, percent)), f"the largest {percent:g} %"
        size = s.get("size", 1.0)
        return spread(sel.above(sizes, size)), f"larger than {size:g}"
    if criterion == "DISTANCE":
        points = world_positions()
        centre = scene_centre(obj, scene, s.get("centre", "MEDIAN"), points)
        distance = sel.distance_from(points, centre)
        if s.get("by", "PERCENT") == "PERCENT":
            percent = s.get("percent", 1.0)
            return spread(sel.largest(distance, percent)), f"the farthest {percent:g} % from the centre"
        radius = s.get("radius", 10.0)
        return spread(sel.above(distance, radius, "radius")), f"farther than {radius:g} from the centre"
    if criterion == "CROP":
        box = crop_box(obj)
        if box is None:
            raise CleanupError(f"{obj.name!r} has no crop box: add one (Add Crop Box) and place it first")
        return spread(sel.outside_box(read_positions(obj)[visible], to_crop_box(obj, box))), "outside the crop box"
    if criterion == "UNSEEN":
        views = training_views(scene)
        if not views:
            raise CleanupError("the scene has no training cameras: import the COLMAP model the splats were "
                               "trained on (File > Import > COLMAP) first")
        test = s.get("test", "FRUSTUM")
        words = f"outside all {len(views)} camera views" if test == "FRUSTUM" else f"behind all {len(views)} cameras"
        return spread(sel.unseen(world_positions(), views, test, s.get("margin", 0.0))), words
    if criterion == "OUTLIERS":
        ratio, k = s.get("std_ratio", 2.5), s.get("neighbours", sel.DEFAULT_NEIGHBOURS)
        mask, stats = sel.isolated(world_positions(), ratio, k)
        return spread(mask), (f"isolated: mean distance to {k} neighbours above {stats.threshold:.4g} "
                              f"(mean {stats.mean:.4g} + {ratio:g} sd {stats.sd:.4g})")
    raise CleanupError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")


def select_splats(obj, criterion: str, mode: str = "REPLACE", scene=None, **settings) -> Outcome:
    """Select the splats ``criterion`` picks (OPACITY threshold; SCALE by PERCENT/SIZE; DISTANCE
    by PERCENT/RADIUS from a centre; CROP; UNSEEN test/margin; OUTLIERS std_ratio/neighbours),
    combined with the current selection in ``mode`` (REPLACE, EXTEND, SUBTRACT, INTERSECT).
    Hidden splats are never selected."""
    total = _check_object(obj)
    if mode not in sel.MODES:
        raise CleanupError(f"mode must be one of {', '.join(sel.MODES)}, got {mode!r}")
    if criterion not in CRITERIA:
        raise CleanupError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    unknown = set(settings) - SETTINGS[criterion]
    if unknown:
        raise CleanupError(f"{criterion} takes {', '.join(sorted(SETTINGS[criterion])) or 'no settings'}, "
                           f"not {', '.join(sorted(unknown))}")
    scene = scene or bpy.context.scene
    hidden = read_hidden(obj)
    visible = ~hidden
    if not visible.any():
        raise CleanupError(f"every splat of {obj.name!r} is hidden: reveal them first")
    picked, words = _criterion_mask(obj, scene, criterion, visible, settings)
    current = read_selection(obj) & visible if mode != "REPLACE" else None
    selection = sel.combine(current, picked, mode) & visible
    write_selection(obj, selection)
    count = int(selection.sum())
    return Outcome(count, total, f"Selected {_n(count)} of {_n(total)} splats ({_n(int(picked.sum()))} {words})",
                   details={"picked": int(picked.sum())})


def select_all_splats(obj, action: str = "SELECT") -> Outcome:
    total = _check_object(obj)
    visible = ~read_hidden(obj)
    if action == "SELECT":
        selection = visible
    elif action == "DESELECT":
        selection = np.zeros(total, bool)
    elif action == "INVERT":
        selection = ~read_selection(obj) & visible
    else:
        raise CleanupError(f"action must be SELECT, DESELECT or INVERT, got {action!r}")
    write_selection(obj, selection)
    count = int(selection.sum())
    return Outcome(count, total, f"Selected {_n(count)} of {_n(total)} splats")


def selected_count(obj) -> tuple[int, int, int]:
    """(selected and visible, hidden, total): the panel's live count."""
    hidden = read_hidden(obj)
    return int((read_selection(obj) & ~hidden).sum()), int(hidden.sum()), len(hidden)


def _chosen(obj, unselected: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    total = _check_object(obj)
    hidden = read_hidden(obj)
    chosen = (~read_selection(obj) if unselected else read_selection(obj)) & ~hidden
    return chosen, hidden, total


def hide_splats(obj, unselected: bool = False) -> Outcome:
    """Hide the selected splats (or the unselected ones) through the Splat Controls: nothing is
    deleted, Reveal shows them again, renders and export leave them out."""
    chosen, hidden, total = _chosen(obj, unselected)
    count = int(chosen.sum())
    if not count:
        raise CleanupError(f"no {'unselected' if unselected else 'selected'} visible splats in {obj.name!r} to hide")
    if (hidden | chosen).all():
        raise CleanupError(f"hiding {_n(count)} splats would hide every splat of {obj.name!r}; nothing was hidden")
    if splat_modifier(obj) is None:
        attach_splat_modifier(obj)
    write_hidden(obj, hidden | chosen)
    write_selection(obj, read_selection(obj) & ~chosen)
    now = int((hidden | chosen).sum())
    return Outcome(count, total, f"Hid {_n(count)} of {_n(total)} splats ({_n(now)} hidden in all)")


def reveal_splats(obj, select: bool = True) -> Outcome:
    """Show every hidden splat again (selected, with ``select``, as Blender's Reveal does)."""
    total = _check_object(obj)
    hidden = read_hidden(obj)
    count = int(hidden.sum())
    if not count:
        raise CleanupError(f"no splats of {obj.name!r} are hidden")
    if select:
        write_selection(obj, (read_selection(obj) & ~hidden) | hidden)
    write_hidden(obj, np.zeros(total, bool))
    return Outcome(count, total, f"Revealed {_n(count)} of {_n(total)} splats")


def delete_splats(obj) -> Outcome:
    """Delete the selected (visible) splats for good; the others stay bit for bit. Undo brings them back."""
    chosen, _hidden, total = _chosen(obj)
    count = int(chosen.sum())
    if not count:
        raise CleanupError(f"no selected splats in {obj.name!r} to delete (select some first)")
    if count == total:
        raise CleanupError(f"deleting the {_n(count)} selected splats would remove every splat of {obj.name!r}; "
                           "nothing was deleted (delete the object instead)")
    with _object_mode(obj):
        removed = remove_points(obj, chosen)
    return Outcome(removed, total, f"Removed {_n(removed)} of {_n(total)} splats")


def separate_splats(obj) -> Outcome:
    """Move the selected (visible) splats into a new object beside this one (same transform,
    modifiers and materials)."""
    chosen, _hidden, total = _chosen(obj)
    count = int(chosen.sum())
    if not count:
        raise CleanupError(f"no selected splats in {obj.name!r} to separate (select some first)")
    if count == total:
        raise CleanupError(f"all {_n(total)} splats of {obj.name!r} are selected: separating them would leave it "
                           "empty; nothing was separated")
    with _object_mode(obj):
        new = obj.copy()
        new.data = obj.data.copy()
        new.name = f"{obj.name} Separated"
        for collection in obj.users_collection:
            collection.objects.link(new)
        remove_points(new, ~chosen)
        write_selection(new, np.zeros(count, bool))
        remove_points(obj, chosen)
    return Outcome(count, total, f"Separated {_n(count)} of {_n(total)} splats into {new.name!r}", new_object=new)


class _object_mode:
    """Deleting points swaps or resizes the data, which edit mode must not see happen: leave it
    around the change and come back."""

    def __init__(self, obj):
        self.obj = obj
        self.was_edit = obj.mode == "EDIT"

    def __enter__(self):
        if self.was_edit:
            with bpy.context.temp_override(active_object=self.obj, object=self.obj):
                bpy.ops.object.mode_set(mode="OBJECT")
        return self

    def __exit__(self, *exc):
        if self.was_edit:
            with bpy.context.temp_override(active_object=self.obj, object=self.obj):
                bpy.ops.object.mode_set(mode="EDIT")
        return False


def cleanup(obj, spec: sel.CleanupSpec, scene=None) -> list[Outcome]:
    """Apply a parsed ``--cleanup`` value: each selection extends the one before, then the action
    (hide or delete). Returns every step's outcome, the action's last."""
    steps = []
    for i, (key, value) in enumerate(spec.steps):
        mode = "REPLACE" if i == 0 else "EXTEND"
        if key == "opacity":
            out = select_splats(obj, "OPACITY", mode, scene, threshold=value)
        elif key in ("scale", "distance"):
            kind, amount = value
            by = "PERCENT" if kind == "percent" else ("SIZE" if key == "scale" else "RADIUS")
            extra = {"percent": amount} if kind == "percent" else {("size" if key == "scale" else "radius"): amount}
            out = select_splats(obj, key.upper(), mode, scene, by=by, **extra)
        elif key == "unseen":
            out = select_splats(obj, "UNSEEN", mode, scene, test=value)
        else:
            out = select_splats(obj, "OUTLIERS", mode, scene, std_ratio=value, neighbours=spec.neighbours)
        steps.append(out)
    action = delete_splats if spec.action == "delete" else hide_splats
    steps.append(action(obj))
    return steps


# --- operators ------------------------------------------------------------------------------------------------

_MODE_ITEMS = [("REPLACE", "Replace", "Select only these splats", "SELECT_SET", 0),
               ("EXTEND", "Extend", "Add these splats to the selection", "SELECT_EXTEND", 1),
               ("SUBTRACT", "Subtract", "Remove these splats from the selection", "SELECT_SUBTRACT", 2),
               ("INTERSECT", "Intersect", "Keep selected only the splats that are also these", "SELECT_INTERSECT", 3)]


def _poll(cls, context) -> bool:
    obj = context.active_object
    if is_splat_object(obj):
        return True
    cls.poll_message_set(f"The active object is not a splat object: Splatwork looks for {describe_splat_objects()}")
    return False


def _run(op, fn, *args, **kwargs):
    try:
        out = fn(*args, **kwargs)
    except (CleanupError, SplatLayoutError) as exc:
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    except Exception as exc:  # noqa: BLE001 - an operator reports, it never raises a traceback
        op.report({"ERROR"}, f"Cleanup failed: {failure(exc)}")
        return {"CANCELLED"}
    op.report({"INFO"}, out.message)
    return {"FINISHED"}


class _SelectBase:
    bl_options = {"REGISTER", "UNDO"}
    criterion = ""

    mode: EnumProperty(name="Mode", items=_MODE_ITEMS, default="REPLACE",
                       description="How these splats combine with the current selection")

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def settings(self) -> dict:
        return {}

    def execute(self, context):
        return _run(self, select_splats, context.active_object, self.criterion, self.mode, context.scene,
                    **self.settings())

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "mode")
        for name in self.shown():
            layout.prop(self, name)
        draw_count(layout, context.active_object)

    def shown(self) -> list[str]:
        return []


class SPLATWORK_OT_select_splats_opacity(_SelectBase, bpy.types.Operator):
    """Select the splats fainter than an opacity: near-invisible haze that still costs render time"""

    bl_idname = "splatwork.select_splats_opacity"
    bl_label = "Select Faint Splats"
    criterion = "OPACITY"
    threshold: FloatProperty(name="Opacity Below", default=0.05, min=0.0, max=1.0, subtype="FACTOR",
                             description="Select splats whose opacity is below this")

    def settings(self):
        return {"threshold": self.threshold}

    def shown(self):
        return ["threshold"]


class SPLATWORK_OT_select_splats_scale(_SelectBase, bpy.types.Operator):
    """Select the largest splats: the giant blurry ones a capture leaves around its edges"""

    bl_idname = "splatwork.select_splats_scale"
    bl_label = "Select Large Splats"
    criterion = "SCALE"
    by: EnumProperty(name="By", items=[("PERCENT", "Largest %", "The largest part of the splats"),
                                       ("SIZE", "Above Size", "Splats larger than a size (largest axis, one sd)")],
                     default="PERCENT")
    percent: FloatProperty(name="Largest %", default=1.0, min=0.0, max=100.0, subtype="PERCENTAGE",
                           description="Select this part of the splats, the largest first")
    size: FloatProperty(name="Size Above", default=1.0, min=0.0, soft_max=100.0, subtype="DISTANCE",
                        description="Select splats whose largest axis (one standard deviation) is longer than this")

    def settings(self):
        return {"by": self.by, "percent": self.percent, "size": self.size}

    def shown(self):
        return ["by", "percent" if self.by == "PERCENT" else "size"]


class SPLATWORK_OT_select_splats_distance(_SelectBase, bpy.types.Operator):
    """Select the splats far from the scene's centre: background clutter and distant floaters"""

    bl_idname = "splatwork.select_splats_distance"
    bl_label = "Select Distant Splats"
    criterion = "DISTANCE"
    centre: EnumProperty(name="Centre", default="MEDIAN", items=[
        ("MEDIAN", "Splats' Median", "The median of the splat positions (far floaters do not move it)"),
        ("CAMERAS", "Cameras' Centre", "The mean of the training cameras' positions"),
        ("CURSOR", "3D Cursor", "The 3D cursor"),
        ("ORIGIN", "World Origin", "The world origin")])
    by: EnumProperty(name="By", items=[("PERCENT", "Farthest %", "The farthest part of the splats"),
                                       ("RADIUS", "Beyond Radius", "Splats farther than a radius")],
                     default="PERCENT")
    percent: FloatProperty(name="Farthest %", default=1.0, min=0.0, max=100.0, subtype="PERCENTAGE",
                           description="Select this part of the splats, the farthest first")
    radius: FloatProperty(name="Radius", default=10.0, min=0.0, soft_max=1000.0, subtype="DISTANCE",
                          description="Select splats farther than this from the centre")

    def settings(self):
        return {"centre": self.centre, "by": self.by, "percent": self.percent, "radius": self.radius}

    def shown(self):
        return ["centre", "by", "percent" if self.by == "PERCENT" else "radius"]


class SPLATWORK_OT_select_splats_crop(_SelectBase, bpy.types.Operator):
    """Select the splats outside the object's crop box (Add Crop Box makes one)"""

    bl_idname = "splatwork.select_splats_crop"
    bl_label = "Select Outside Crop Box"
    criterion = "CROP"


class SPLATWORK_OT_select_splats_unseen(_SelectBase, bpy.types.Operator):
    """Select the splats no training camera sees (the cameras of the imported COLMAP model)"""

    bl_idname = "splatwork.select_splats_unseen"
    bl_label = "Select Unseen Splats"
    criterion = "UNSEEN"
    test: EnumProperty(name="Test", default="FRUSTUM", items=[
        ("FRUSTUM", "Outside Every View", "Splats outside every camera's field of view"),
        ("BEHIND", "Behind Every Camera", "Splats behind every camera (a looser test)")])
    margin: FloatProperty(name="Margin", default=0.0, min=0.0, max=10.0, subtype="FACTOR",
                          description="Widen each view by this part of the image size on every side")

    def settings(self):
        return {"test": self.test, "margin": self.margin}

    def shown(self):
        return ["test", "margin"] if self.test == "FRUSTUM" else ["test"]


class SPLATWORK_OT_select_splats_outliers(_SelectBase, bpy.types.Operator):
    """Select isolated splats (statistical outlier removal): floaters far from their nearest neighbours"""

    bl_idname = "splatwork.select_splats_outliers"
    bl_label = "Select Isolated Splats"
    criterion = "OUTLIERS"
    std_ratio: FloatProperty(name="Deviations", default=2.5, min=0.0, max=100.0, soft_max=10.0,
                             description="Select splats whose mean distance to their neighbours is above the "
                             "mean of all splats plus this many standard deviations (smaller selects more)")
    neighbours: IntProperty(name="Neighbours", default=sel.DEFAULT_NEIGHBOURS, min=1, max=sel.MAX_NEIGHBOURS,
                            description="How many nearest splats the distance is measured to (more finds "
                            "larger floating clumps, and takes longer)")

    def settings(self):
        return {"std_ratio": self.std_ratio, "neighbours": self.neighbours}

    def shown(self):
        return ["std_ratio", "neighbours"]


class SPLATWORK_OT_select_all_splats(bpy.types.Operator):
    """Select, deselect or invert the selection of every visible splat"""

    bl_idname = "splatwork.select_all_splats"
    bl_label = "Select All Splats"
    bl_options = {"REGISTER", "UNDO"}
    action: EnumProperty(name="Action", default="SELECT", items=[
        ("SELECT", "Select", "Select every visible splat"), ("DESELECT", "Deselect", "Deselect every splat"),
        ("INVERT", "Invert", "Select the visible splats that are not selected, and only those")])

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def execute(self, context):
        return _run(self, select_all_splats, context.active_object, self.action)

    def draw(self, context):
        self.layout.prop(self, "action")
        draw_count(self.layout, context.active_object)


class SPLATWORK_OT_hide_splats(bpy.types.Operator):
    """Hide the selected splats: the Splat Controls leave them out of the viewport, renders and export
    until Reveal (nothing is deleted)"""

    bl_idname = "splatwork.hide_splats"
    bl_label = "Hide Splats"
    bl_options = {"REGISTER", "UNDO"}
    unselected: BoolProperty(name="Unselected", default=False, description="Hide the splats that are not selected")

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def execute(self, context):
        return _run(self, hide_splats, context.active_object, self.unselected)

    def draw(self, context):
        self.layout.prop(self, "unselected")
        draw_count(self.layout, context.active_object)


class SPLATWORK_OT_reveal_splats(bpy.types.Operator):
    """Show every hidden splat again"""

    bl_idname = "splatwork.reveal_splats"
    bl_label = "Reveal Splats"
    bl_options = {"REGISTER", "UNDO"}
    select: BoolProperty(name="Select", default=True, description="Select the splats revealed")

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def execute(self, context):
        return _run(self, reveal_splats, context.active_object, self.select)

    def draw(self, context):
        self.layout.prop(self, "select")
        draw_count(self.layout, context.active_object)


class SPLATWORK_OT_delete_splats(bpy.types.Operator):
    """Delete the selected splats (Ctrl+Z brings them back); the others are kept exactly"""

    bl_idname = "splatwork.delete_splats"
    bl_label = "Delete Splats"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def execute(self, context):
        return _run(self, delete_splats, context.active_object)

    def draw(self, context):
        draw_count(self.layout, context.active_object)


class SPLATWORK_OT_separate_splats(bpy.types.Operator):
    """Move the selected splats into a new object"""

    bl_idname = "splatwork.separate_splats"
    bl_label = "Separate Splats"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _poll(cls, context)

    def execute(self, context):
        try:
            out = separate_splats(context.active_object)
        except (CleanupError, SplatLayoutError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001 - an operator reports, it never raises a traceback
            self.report({"ERROR"}, f"Cleanup failed: {failure(exc)}")
            return {"CANCELLED"}
        self.report({"INFO"}, out.message)
        return {"FINISHED"}

    def draw(self, context):
        draw_count(self.layout, context.active_object)


def draw_count(layout, obj) -> None:
    """The live count: selected (visible) and hidden splats of ``obj``."""
    if not is_splat_object(obj):
        return
    try:
        selected, hidden, total = selected_count(obj)
    except SplatLayoutError as exc:
        layout.label(text=str(exc), icon="ERROR")
        return
    text = f"Selected {_n(selected)} of {_n(total)}"
    if hidden:
        text += f", {_n(hidden)} hidden"
    layout.label(text=text, icon="RESTRICT_SELECT_OFF")


class SPLATWORK_PT_cleanup(bpy.types.Panel):
    bl_label = "Cleanup"
    bl_idname = "SPLATWORK_PT_cleanup"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatwork"
    bl_parent_id = "SPLATWORK_PT_splats"

    @classmethod
    def poll(cls, context):
        return is_splat_object(context.active_object)

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        draw_count(layout, obj)
        col = layout.column(align=True)
        col.label(text="Select")
        col.operator(SPLATWORK_OT_select_splats_opacity.bl_idname, text="Faint", icon="MOD_OPACITY")
        col.operator(SPLATWORK_OT_select_splats_scale.bl_idname, text="Large", icon="FULLSCREEN_ENTER")
        col.operator(SPLATWORK_OT_select_splats_distance.bl_idname, text="Distant", icon="DRIVER_DISTANCE")
        col.operator(SPLATWORK_OT_select_splats_crop.bl_idname, text="Outside Crop Box", icon="MESH_CUBE")
        col.operator(SPLATWORK_OT_select_splats_unseen.bl_idname, text="Unseen by Cameras", icon="HIDE_ON")
        col.operator(SPLATWORK_OT_select_splats_outliers.bl_idname, text="Isolated", icon="STICKY_UVS_DISABLE")
        row = layout.row(align=True)
        for action, text in (("SELECT", "All"), ("DESELECT", "None"), ("INVERT", "Invert")):
            row.operator(SPLATWORK_OT_select_all_splats.bl_idname, text=text).action = action
        col = layout.column(align=True)
        col.label(text="Selected Splats")
        row = col.row(align=True)
        row.operator(SPLATWORK_OT_hide_splats.bl_idname, text="Hide", icon="HIDE_ON")
        row.operator(SPLATWORK_OT_reveal_splats.bl_idname, text="Reveal", icon="HIDE_OFF")
        row = col.row(align=True)
        row.operator(SPLATWORK_OT_delete_splats.bl_idname, text="Delete", icon="TRASH")
        row.operator(SPLATWORK_OT_separate_splats.bl_idname, text="Separate", icon="UNLINKED")


def menu_pointcloud_edit(self, context):
    """The cleanup selections in point cloud edit mode's Select menu, beside Blender's own."""
    if not is_splat_object(context.active_object):
        return
    layout = self.layout
    layout.separator()
    for cls in SELECT_OPERATORS:
        layout.operator(cls.bl_idname)


SELECT_OPERATORS = (SPLATWORK_OT_select_splats_opacity, SPLATWORK_OT_select_splats_scale,
                    SPLATWORK_OT_select_splats_distance, SPLATWORK_OT_select_splats_crop,
                    SPLATWORK_OT_select_splats_unseen, SPLATWORK_OT_select_splats_outliers)
CLASSES = (*SELECT_OPERATORS, SPLATWORK_OT_select_all_splats, SPLATWORK_OT_hide_splats, SPLATWORK_OT_reveal_splats,
           SPLATWORK_OT_delete_splats, SPLATWORK_OT_separate_splats, SPLATWORK_PT_cleanup)


def menu_pointcloud_hide(self, context):
    """Hide and Reveal in point cloud edit mode's Point Cloud menu (Blender has no hiding for points)."""
    if not is_splat_object(context.active_object):
        return
    layout = self.layout
    layout.separator()
    layout.operator(SPLATWORK_OT_hide_splats.bl_idname)
    layout.operator(SPLATWORK_OT_reveal_splats.bl_idname)


_MENUS = (("VIEW3D_MT_select_edit_pointcloud", menu_pointcloud_edit),
          ("VIEW3D_MT_edit_pointcloud", menu_pointcloud_hide))


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for menu, entry in _MENUS:
        if hasattr(bpy.types, menu):
            getattr(bpy.types, menu).append(entry)


def unregister():
    for menu, entry in _MENUS:
        if hasattr(bpy.types, menu):
            getattr(bpy.types, menu).remove(entry)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
