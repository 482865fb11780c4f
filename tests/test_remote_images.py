"""A remote run's images at the training size, made in Blender (no PIL there): decoded by Blender,
reduced by an exact area average, written as lossless PNG under the model's names. Checked against
PIL (what the bridge uses) on real photos; the uploads themselves are in test_remote.py."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image


def _photos(count=3):
    return sorted(shared_data("colmap", "statue_of_liberty", "images").glob("*.jpg"))[:count]


def statue_subset(folder, count: int):
    """The first ``count`` photos of the Statue of Liberty and a model of just those (copies, in
    ``folder``): (model folder, images folder)."""
    import dataclasses
    import shutil

    from bridge.formats import colmap

    statue = shared_data("colmap", "statue_of_liberty")
    rec = colmap.read_model(statue / "sparse" / "0")
    rec = dataclasses.replace(rec, views=rec.views[:count])
    colmap.write_model(rec, folder / "sparse" / "0")
    (folder / "images").mkdir(parents=True)
    for view in rec.views:
        shutil.copy2(statue / "images" / view.name, folder / "images" / view.name)
    return folder / "sparse" / "0", folder / "images"


def test_blender_decodes_photos_as_pil_does(blender_with_splatwork, splatwork):
    for path in _photos():
        rgba = splatwork.addon.remote_images.decode(str(path))
        with Image.open(path) as image:
            pil = np.asarray(image.convert("RGB"), np.int16)
        assert rgba.shape[:2] == pil.shape[:2] and (rgba[..., 3] == 255).all()
        assert np.abs(rgba[..., :3] - pil).mean() < 0.5, path  # the same libjpeg results (exactly, today)


def test_whole_factors_give_pil_box_and_others_the_exact_area_average(blender_with_splatwork, splatwork):
    remote_images = splatwork.addon.remote_images
    for path in _photos():
        rgba = remote_images.decode(str(path))
        with Image.open(path) as image:
            pil = image.convert("RGB")
        for factor in (2, 4):  # what the bridge's own BOX resize computes, to rounding
            size = (pil.width // factor, pil.height // factor)
            ours = remote_images.reduce(rgba, size).astype(int)
            assert ours.shape == (size[1], size[0], 3)
            assert np.abs(ours - np.asarray(pil.resize(size, Image.BOX), int)).max() <= 1
        # 800 / 267 is not whole: each output pixel is the mean of the area it covers, fractions of
        # pixels included (PIL's BOX counts whole pixels, so it differs a little at edges)
        size = (round(pil.width / 3), round(pil.height / 3))
        ours = remote_images.reduce(rgba, size).astype(int)
        box = np.asarray(pil.resize(size, Image.BOX), int)
        assert np.abs(ours - box).mean() < 1.0
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    for size in ((20, 14), (7, 11), (53, 36), (1, 1)):
        expected = np.einsum("iy,jx,yxc->ijc", _coverage(37, size[1]), _coverage(53, size[0]),
                             pixels[..., :3].astype(float))
        ours = remote_images.reduce(pixels, size)
        assert np.abs(ours - expected).max() <= 0.5 + 1e-6, size  # exact, then rounded


def _coverage(size: int, count: int) -> np.ndarray:
    """(count, size): the share of each output span covered by each input pixel."""
    span = size / count
    start = np.arange(count)[:, None] * span
    overlap = np.minimum(start + span, np.arange(size)[None, :] + 1) - np.maximum(start, np.arange(size)[None, :])
    return np.clip(overlap, 0.0, None) / span


def test_transparent_pixels_do_not_bleed_and_alpha_is_kept(blender_with_splatwork, splatwork):
    remote_images = splatwork.addon.remote_images
    pixels = np.zeros((2, 4, 4), np.uint8)
    pixels[:, ::2] = (255, 0, 0, 0)  # invisible red
    pixels[:, 1::2] = (0, 0, 255, 255)  # opaque blue
    out = remote_images.reduce(pixels, (2, 1))
    assert out.tolist() == [[[0, 0, 255, 128], [0, 0, 255, 128]]]  # half-covered blue, not purple
    clear = remote_images.reduce(np.zeros((4, 4, 4), np.uint8), (2, 2))
    assert clear.shape == (2, 2, 4) and not clear.any()


def test_reduced_images_are_lossless_pngs_pil_opens_under_any_name(blender_with_splatwork, splatwork, tmp_path):
    remote_images = splatwork.addon.remote_images
    rng = np.random.default_rng(1)
    for channels in (3, 4):
        pixels = rng.integers(0, 256, (9, 13, channels), dtype=np.uint8)
        path = tmp_path / f"photo{channels}.jpg"  # the model's name stays; the content is PNG
        path.write_bytes(remote_images.png_bytes(pixels))
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == ("RGBA" if channels == 4 else "RGB")
            assert (np.asarray(image) == pixels).all()
        # Blender reads them back the same too.
        assert (remote_images.decode(str(path))[..., :channels] == pixels).all()
    Image.open(io.BytesIO(remote_images.png_bytes(np.zeros((1, 1, 3), np.uint8)))).verify()


def test_each_photo_goes_as_the_smaller_file(blender_with_splatwork, splatwork, tmp_path):
    # These web photos are strongly compressed JPEGs: at half the size a lossless PNG often outweighs
    # them, and then the photo goes as it is (the bridge reduces it); at an eighth it never does.
    protocol, remote_images = splatwork.bridge.protocol, splatwork.addon.remote_images
    model, images = statue_subset(tmp_path, 10)
    for downscale, size in ((2.0, (400, 600)), (8.0, (100, 150))):
        job = protocol.job_from_dict(protocol.TrainJob, {"model": str(model), "images": str(images), "out": "x",
                                                         "downscale": downscale})
        files = remote_images.training_images(job, str(images))
        assert sorted(files) == sorted(p.name for p in images.iterdir())
        originals = 0
        for name, path in files.items():
            source = images / name
            if path == str(source):
                originals += 1
                continue
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size == size
            assert os.path.getsize(path) < source.stat().st_size
        assert (originals > 0) if downscale == 2.0 else (originals == 0), originals
        again = remote_images.training_images(job, str(images))
        assert again == files and all(os.stat(p).st_mtime_ns == os.stat(files[n]).st_mtime_ns for n, p in again.items())


def test_an_unreadable_image_is_an_error_naming_the_file(blender_with_splatwork, splatwork, tmp_path):
    remote_images = splatwork.addon.remote_images
    bad = tmp_path / "view_007.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(splatwork.addon.remote.RemoteError, match="view_007.jpg") as info:
        remote_images.decode(str(bad))
    assert "cannot read" in info.value.message and info.value.hint
    with pytest.raises(splatwork.addon.remote.RemoteError, match="missing.jpg"):
        remote_images.decode(str(tmp_path / "missing.jpg"))
