"""The names of the ID properties an import leaves on Blender data (cameras, collections, objects): what
later tools look for, and what saved .blend files carry, so they never change."""
from __future__ import annotations

PARAMS_KEY = "splatwork_colmap_params"  # camera data: COLMAP params of the model, float64
FRAMES_KEY = "splatwork_frames"  # camera data of the animated camera: [w, h, aspect_x, aspect_y] per frame
FRAME_START_KEY = "splatwork_frame_start"
WORLD_KEY = "splatwork_world_from_colmap"  # collection: 4x4 rigid transform, row-major
MODEL_DIR_KEY = "splatwork_colmap_model"  # collection: the model folder it was imported from
POINTS_KEY = "splatwork_colmap_points"  # object: marks the sparse point cloud of an import
