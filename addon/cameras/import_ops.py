"""``bpy.ops.splatwork.import_colmap``: a COLMAP model and its images as one collection."""
from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ...bridge.formats import colmap
from ...bridge.formats.cameras import PINHOLE_MODELS, up_and_centre_transform
from ...bridge.formats.errors import FormatError
from ..common.reports import failure
from .activate import activate_camera
from .build import ImportOptions, build_collection


def resolve_model_dir(path: str | Path, which: str = "") -> Path:
    """The model folder: ``path`` itself, or its sparse/N child named ``which`` (default: the first)."""
    root = Path(bpy.path.abspath(str(path))) if str(path) else Path()
    if not str(path) or not root.exists():
        raise FormatError(root if str(path) else None, "no COLMAP model folder given" if not str(path)
                          else "the model folder does not exist")
    models = colmap.find_models(root)
    if not models:
        return root  # model_format() names what is missing
    if which:
        for model in models:
            if str(model) == which or model.name == which:
                return model
        raise FormatError(root, f"has no model {which!r}; found {', '.join(m.name for m in models)}")
    return models[0]


def default_images_dir(model_dir: Path) -> Path | None:
    """COLMAP's usual layout: project/sparse/N next to project/images."""
    for parent in (model_dir.parent, model_dir.parent.parent, model_dir):
        if (parent / "images").is_dir():
            return parent / "images"
    return None


class SPLATWORK_OT_import_colmap(bpy.types.Operator):
    """Import a COLMAP sparse model: a camera per image, the sparse points and an animated camera"""

    bl_idname = "splatwork.import_colmap"
    bl_label = "Import COLMAP"
    bl_options = {"REGISTER", "UNDO"}

    model_dir: StringProperty(name="Model", subtype="DIR_PATH",
                              description="A COLMAP sparse model folder (sparse/0) or the project folder")
    # What the file browser fills in (it knows only these names); used when model_dir is empty.
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    model: StringProperty(name="Reconstruction",
                          description="Which reconstruction of a project folder: '1' for sparse/1; empty: the first")
    images_dir: StringProperty(name="Images", subtype="DIR_PATH",
                               description="The photos; empty: the images folder next to sparse/, if any")
    backgrounds: BoolProperty(name="Background Images", default=True,
                              description="Show each photo behind its camera")
    points: BoolProperty(name="Sparse Points", default=True)
    animated_camera: BoolProperty(name="Animated Camera", default=True,
                                  description="One more camera moving through every view, a view per frame")
    undistort: BoolProperty(name="Undistort Images", default=False,
                            description="Undistort the photos (pycolmap) so Blender's pinhole camera is exact")
    undistorted_dir: StringProperty(name="Undistorted Output", subtype="DIR_PATH",
                                    description="Where undistorted images go; empty: 'undistorted' next to images")
    world: EnumProperty(
        name="World",
        items=[("KEEP", "As Reconstructed", "Keep COLMAP's world coordinates"),
               ("UP_CENTERED", "Z Up, Centred", "Rotate so the cameras' up is +Z and centre on the points")],
        default="KEEP",
    )
    frame_start: IntProperty(name="Start Frame", default=1)

    def invoke(self, context, _event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def draw(self, _context):
        layout = self.layout
        folder = self.model_dir or self.directory
        root = Path(bpy.path.abspath(folder)) if folder else None
        found = colmap.find_models(root) if root is not None and root.is_dir() else []
        if len(found) > 1:
            layout.label(text="Found: " + ", ".join(str(m.relative_to(root)) for m in found))
        for name in ("model", "images_dir", "backgrounds", "points", "animated_camera", "undistort",
                     "undistorted_dir", "world"):
            layout.prop(self, name)

    def execute(self, context):
        try:
            collection = self._import(context)
        except Exception as exc:  # noqa: BLE001 - operators report, never raise; the import removed its data
            self.report({"ERROR"}, f"COLMAP import failed: {failure(exc)}")
            return {"CANCELLED"}
        distorted = sorted({o.data.splatwork_colmap.model for o in collection.objects
                            if o.type == "CAMERA" and o.data.splatwork_colmap.model not in PINHOLE_MODELS
                            and o.data.splatwork_colmap.is_colmap})
        if distorted:
            # Blender's camera is a pinhole: say so rather than let the photos silently misalign.
            self.report({"WARNING"}, f"{', '.join(distorted)} cameras have lens distortion that Blender's camera "
                                     "does not model; enable Undistort Images for pixel-exact cameras")
        self.report({"INFO"}, f"Imported {collection.name}")
        return {"FINISHED"}

    def _import(self, context):
        model_dir = resolve_model_dir(self.model_dir or self.directory, self.model)
        images_dir = Path(bpy.path.abspath(self.images_dir)) if self.images_dir else default_images_dir(model_dir)
        if self.undistort:
            if images_dir is None:
                raise FormatError(model_dir, "undistorting needs the images folder")
            out = (Path(bpy.path.abspath(self.undistorted_dir)) if self.undistorted_dir
                   else images_dir.parent / "undistorted")
            model_dir, images_dir = colmap.undistort(model_dir, images_dir, out)
        rec = colmap.read_model(model_dir)
        world = up_and_centre_transform(rec.views, rec.points) if self.world == "UP_CENTERED" else None
        options = ImportOptions(images_dir=images_dir, backgrounds=self.backgrounds, points=self.points,
                                animated_camera=self.animated_camera, world=world, frame_start=self.frame_start)
        scene = context.scene
        name = "COLMAP " + (model_dir.parent.parent.name if model_dir.parent.name == "sparse" else model_dir.name)
        collection, cameras = build_collection(rec, name, scene, options, model_dir)
        scene.splatwork_colmap.collection = collection
        activate_camera(scene, cameras[0])
        if self.animated_camera and len(cameras) > 1:
            scene.frame_start, scene.frame_end = self.frame_start, self.frame_start + len(cameras) - 1
        return collection


def register():
    bpy.utils.register_class(SPLATWORK_OT_import_colmap)


def unregister():
    bpy.utils.unregister_class(SPLATWORK_OT_import_colmap)
