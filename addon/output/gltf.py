"""Splats through Blender's own glTF 2.0 exporter and importer (io_scene_gltf2's user extensions).

File > Export > glTF 2.0 writes every splat object as a mesh primitive with mode POINTS and
``KHR_gaussian_splatting`` (``bridge.formats.gltf``: the attributes, their types and the version of the
extension followed), in the object's node, so its transform, parent and name stay as in the scene.
File > Import > glTF 2.0 reads such primitives back as Splatwork splat objects (native on 5.3+)
through the same reader, replacing the node the importer made, so children, animation and the rest
of the scene attach to them. A splat primitive that cannot be read (missing or mismatched accessors,
counts past the file's data, NaN, Draco or meshopt compression, an unknown version of the extension)
is reported by name and left out; nothing of it is created, and the rest of the scene imports.

The glTF add-on finds the two classes as ``glTF2ExportUserExtension`` / ``glTF2ImportUserExtension``
on the extension's root module (it looks them up on every enabled add-on when an export or import
starts). They import nothing of io_scene_gltf2 until it calls them, so without it (or with it
disabled) nothing here runs and nothing breaks.

Axes: Blender is Z-up, glTF Y-up. The glTF add-on turns node transforms and mesh data between them
(unless "+Y Up" is off); splats are turned the same way here, SH bands included (an exact rotation,
``gltf.turn``), so each node holds what a mesh node would.
"""
from __future__ import annotations

import importlib

import bpy

from ...bridge.formats import FormatError, gltf
from ..common.reports import failure
from ..splats import SplatLayoutError, is_splat_object, new_splat_object, object_to_splats
from ..splats.importer import remove_object

# The glTF add-on's own switch that turns its axis conversion off on import (a debugging value).
NO_CONVERSION_DEBUG_VALUE = 100
NODE_MARK = "splatwork_splats"  # set on the importer's node objects whose mesh holds splats


def _gltf_module(name: str):
    return importlib.import_module(f"io_scene_gltf2.{name}")


def _log(settings_log, level: str, message: str) -> None:
    """A message the glTF operator reports in Blender's status bar (and prints) when it finishes."""
    getattr(settings_log, level)(f"Splatwork: {message}", popup=True)


# --------------------------------------------------------------------------------------------------
# Export


class SplatExport:
    """``glTF2ExportUserExtension``: splat objects become KHR_gaussian_splatting primitives."""

    def __init__(self):
        self._meshes = {}  # one glTF mesh per point-cloud data-block (linked duplicates share it)

    def gather_node_mesh_hook(self, hook_node_mesh, blender_object, export_settings):
        if blender_object is not None and is_splat_object(_original(blender_object)):
            hook_node_mesh.export_mesh = False  # ours instead of the add-on's plain point cloud (5.3)

    def gather_node_hook(self, node, blender_object, export_settings):
        if blender_object is None:
            return
        obj = _original(blender_object)
        if not is_splat_object(obj):
            return
        try:
            node.mesh = self._mesh(obj, export_settings)
        except (FormatError, SplatLayoutError) as exc:
            _log(export_settings["log"], "error", f"{obj.name!r} was not exported: {exc}")
        except Exception as exc:  # noqa: BLE001 - the glTF add-on would only print it
            _log(export_settings["log"], "error", f"{obj.name!r} was not exported: {failure(exc)}")

    def _mesh(self, obj, export_settings):
        key = (obj.data.as_pointer(), bool(export_settings["gltf_yup"]))
        if key not in self._meshes:
            splats = object_to_splats(obj)
            if export_settings["gltf_yup"]:
                splats = gltf.turn(splats, gltf.Z_UP_TO_Y_UP)
            self._meshes[key] = gltf_mesh(splats, obj.data.name)
        return self._meshes[key]


def _original(obj):
    return getattr(obj, "original", None) or obj


def gltf_mesh(splats, name: str):
    """A glTF add-on ``Mesh`` with one KHR_gaussian_splatting primitive (splats in glTF axes)."""
    io = _gltf_module("io.com.gltf2_io")
    extensions = _gltf_module("io.com.gltf2_io_extensions")
    binary = _gltf_module("io.exp.binary_data")
    attributes, extras = gltf.encode(splats)
    accessors = {}
    for attr in attributes:
        bounds = attr.accessor_json(0) if attr.with_bounds else {}
        accessors[attr.semantic] = io.Accessor(
            buffer_view=binary.BinaryData(attr.values.tobytes(), gltf.ARRAY_BUFFER), byte_offset=None,
            component_type=attr.component_type, count=len(attr.values), extensions=None, extras=None,
            max=bounds.get("max"), min=bounds.get("min"), name=None, normalized=True if attr.normalized else None,
            sparse=None, type=attr.type)
    primitive = io.MeshPrimitive(
        attributes=accessors,
        extensions={gltf.EXTENSION: extensions.Extension(gltf.EXTENSION, dict(gltf.EXTENSION_OBJECT), False)},
        extras=extras or None, indices=None, material=None, mode=gltf.POINTS, targets=None)
    return io.Mesh(extensions=None, extras=None, name=name, primitives=[primitive], weights=None)


# --------------------------------------------------------------------------------------------------
# Import


class _Managed:
    """What the glTF importer asks of a user extension's ``extensions``: files that list it in
    extensionsRequired are not refused."""

    def __init__(self, name: str):
        self.name, self.extension, self.required = name, {}, True


class SplatImport:
    """``glTF2ImportUserExtension``: KHR_gaussian_splatting primitives become splat objects."""

    def __init__(self):
        self.extensions = [_Managed(gltf.EXTENSION)]
        self._splats = {}  # mesh index -> SplatSet in Blender's axes (all its good splat primitives)

    def gather_import_gltf_before_hook(self, gltf_importer):
        """Read every splat primitive with our reader, then take them out of the importer's data, so
        neither a half-read primitive nor the add-on's own point cloud (5.3) is ever created.

        Nothing may escape a hook: the glTF add-on's handler of a failing hook itself fails (5.0-5.3)."""
        try:
            self._read(gltf_importer)
        except Exception as exc:  # noqa: BLE001
            self._splats.clear()
            _log(gltf_importer.log, "error", f"no splats were imported: {failure(exc)}")
        try:
            _take_out_splat_primitives(gltf_importer, self._splats)
        except Exception as exc:  # noqa: BLE001
            _log(gltf_importer.log, "error", f"the splat primitives could not be set aside: {failure(exc)}")

    def _read(self, gltf_importer) -> None:
        try:
            # The importer has read the file already: its BIN chunk is used, not read again.
            doc = gltf.load(gltf_importer.filename, glb_bin=getattr(gltf_importer, "glb_buffer", None))
            primitives = gltf.splat_primitives(doc)
        except FormatError as exc:
            _log(gltf_importer.log, "error", f"no splats were imported: {exc}")
            return
        found = {}
        turn = {} if bpy.app.debug_value == NO_CONVERSION_DEBUG_VALUE else {
            "rotation": gltf.Z_UP_TO_Y_UP.T, "scale": 1.0 / bpy.context.scene.unit_settings.scale_length}
        for mesh, index in primitives:
            try:  # in the node's Blender axes and units, as the importer turns meshes
                splats = gltf.read_primitive(doc, mesh, index, **turn)
            except FormatError as exc:
                _log(gltf_importer.log, "error", f"a splat primitive was left out: {exc}")
                continue
            found.setdefault(mesh, []).append(splats)
        for mesh, parts in found.items():
            self._splats[mesh] = gltf.merge(parts)

    def gather_import_node_after_hook(self, vnode, gltf_node, blender_object, gltf_importer):
        mesh = getattr(gltf_node, NODE_MARK, None)
        if mesh is None or mesh not in self._splats or blender_object is None:
            return
        try:
            vnode.blender_object = _place(self._splats[mesh], vnode, gltf_node, blender_object)
        except Exception as exc:  # noqa: BLE001 - reported by the glTF operator; nothing half-made is kept
            _log(gltf_importer.log, "error", f"the splats of node {blender_object.name!r} were not imported: "
                 f"{failure(exc)}")


def _take_out_splat_primitives(gltf_importer, readable: dict) -> None:
    """Remove every KHR_gaussian_splatting primitive from the importer's meshes; a node whose mesh
    is left empty loses it (the importer makes an empty there, which :func:`_place` replaces)."""
    data = gltf_importer.data
    emptied = set()
    for m, mesh in enumerate(data.meshes or []):
        kept = [p for p in mesh.primitives if not (p.extensions and gltf.EXTENSION in p.extensions)]
        if len(kept) == len(mesh.primitives):
            continue
        mesh.primitives = kept
        if not kept:
            emptied.add(m)
    for node in data.nodes or []:
        if node.mesh is None:
            continue
        if node.mesh in readable:
            setattr(node, NODE_MARK, node.mesh)
        if node.mesh in emptied:
            node.mesh = None
            node.skin = None
            node.weights = None


def _place(splats, vnode, gltf_node, made):
    """The splat object of a node: in place of the empty the importer made for it (its name,
    transform, parent, collections and custom properties), or as a child of its mesh object when the
    mesh also has other primitives."""
    name = made.name
    collections = list(made.users_collection)
    degree = splats.sh_degree
    obj = new_splat_object(splats, f"{name}.splats" if made.type != "EMPTY" else name,
                           collections[0] if collections else None, sh_degree=degree)
    try:
        for collection in collections[1:]:
            collection.objects.link(obj)
        if made.type != "EMPTY":
            obj.parent = made
            return made
        obj.parent, obj.parent_type = made.parent, made.parent_type
        if made.parent_type == "BONE":
            obj.parent_bone = made.parent_bone
        obj.matrix_parent_inverse = made.matrix_parent_inverse.copy()
        obj.rotation_mode = made.rotation_mode
        obj.location, obj.rotation_quaternion, obj.scale = made.location, made.rotation_quaternion, made.scale
        obj.rotation_euler = made.rotation_euler
        for key in made.keys():
            obj[key] = made[key]
        extras = getattr(gltf_node, "extras", None)
        if isinstance(extras, dict) and "blender_object_data" in extras:
            extras["blender_object_data"] = obj  # for KHR_animation_pointer
        bpy.data.objects.remove(made)
        obj.name = name
        return obj
    except BaseException:
        remove_object(obj)
        raise
