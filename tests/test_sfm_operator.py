"""``bpy.ops.splatwork.reconstruct`` in real Blender: the bridge runs, the result is imported, ready to train.

Headless, jobs block until the bridge ends, so each call returns with the outcome. Ten statue photos
that overlap well (all ten are placed at 600 px, by either mapper) keep the run to about half a
minute on two cores.
"""
from __future__ import annotations

import json
import time

import pytest
from PIL import Image
from test_sfm import OVERLAPPING, link_photos, noise_photos


def test_reconstruct_then_import_ready_to_train(blender_with_splatwork, tmp_path):
    bpy = blender_with_splatwork
    images = link_photos(tmp_path / "photos", OVERLAPPING)
    out = tmp_path / "result"
    # The global mapper here (the bridge tests cover the incremental one): the option reaches the bridge.
    result = bpy.ops.splatwork.reconstruct(images_dir=str(images), out_dir=str(out), max_size=600,
                                           mapper="global", threads=2)
    assert result == {"FINISHED"}
    summary = json.loads((out / "splatwork-sfm.json").read_text())
    assert summary["metrics"]["mapper"] == "global"

    scene = bpy.context.scene
    settings = scene.splatwork_reconstruct
    assert settings.state == "completed", settings.message
    assert settings.message.startswith("10 of 10 photos placed")
    collection = scene.splatwork_colmap.collection
    assert collection is not None
    assert scene.splatwork_training.source == "COLLECTION"
    assert scene.splatwork_training.collection == collection

    cameras = [o for o in collection.all_objects if o.type == "CAMERA" and o.data.splatwork_colmap.image_name]
    assert sorted(o.data.splatwork_colmap.image_name for o in cameras) == sorted(OVERLAPPING)
    for cam in cameras:  # undistorted: pinhole cameras, each the size of its undistorted photo
        props = cam.data.splatwork_colmap
        assert props.model == "PINHOLE"
        with Image.open(out / "undistorted" / "images" / props.image_name) as img:
            assert img.size == (props.resolution_x, props.resolution_y)
    points = [o for o in collection.all_objects if o.type != "CAMERA"]
    assert points, "the sparse points are imported with the cameras"


def test_missing_photo_folder_is_reported_without_starting(blender_with_splatwork, tmp_path):
    bpy = blender_with_splatwork
    collections = len(bpy.data.collections)
    with pytest.raises(RuntimeError, match="Photo folder not found"):
        bpy.ops.splatwork.reconstruct(images_dir=str(tmp_path / "nowhere"), out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert len(bpy.data.collections) == collections


def test_bridge_failure_is_one_clear_report_and_no_data(blender_with_splatwork, tmp_path):
    bpy = blender_with_splatwork
    images = noise_photos(tmp_path / "photos", 2)
    collections, objects = len(bpy.data.collections), len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="2 photo\\(s\\); at least 3 are needed"):
        bpy.ops.splatwork.reconstruct(images_dir=str(images), out_dir=str(tmp_path / "out"), threads=2)
    settings = bpy.context.scene.splatwork_reconstruct
    assert settings.state == "failed"
    assert "Log:" in settings.message, "the report says where the full log is"
    assert (len(bpy.data.collections), len(bpy.data.objects)) == (collections, objects)


def test_panel_lives_in_the_splatwork_tab(blender_with_splatwork):
    bpy = blender_with_splatwork
    panel = bpy.types.SPLATWORK_PT_reconstruct
    assert panel.bl_category == "Splatwork" and panel.bl_space_type == "VIEW_3D"
    assert bpy.types.SPLATWORK_OT_reconstruct.bl_label == "Reconstruct from Photos"


def test_cancel_from_the_ui_path_imports_nothing(blender_with_splatwork, splatwork, tmp_path):
    """The UI path: the operator returns at once, events arrive through the jobs pump (the timer's
    callback), the status-bar Cancel button stops the bridge, and nothing is imported."""
    bpy = blender_with_splatwork
    jobs = splatwork.addon.common.jobs
    images = link_photos(tmp_path / "photos", OVERLAPPING)
    objects = len(bpy.data.objects)
    result = bpy.ops.splatwork.reconstruct(images_dir=str(images), out_dir=str(tmp_path / "out"),
                                           max_size=600, threads=2, wait="NO")
    assert result == {"FINISHED"}
    job = jobs.get_job("reconstruct")
    assert job.running
    assert not bpy.ops.splatwork.reconstruct.poll(), "one reconstruction at a time"
    deadline = time.monotonic() + 60
    while job.stage != "extracting_features" and job.running and time.monotonic() < deadline:
        jobs.pump()
        time.sleep(0.05)
    assert bpy.ops.splatwork.cancel_job(name="reconstruct") == {"FINISHED"}
    while job.running and time.monotonic() < deadline:
        jobs.pump()
        time.sleep(0.05)
    assert job.state == "stopped", job.message()
    settings = bpy.context.scene.splatwork_reconstruct
    assert settings.state == "stopped" and "nothing was imported" in settings.message
    assert len(bpy.data.objects) == objects
