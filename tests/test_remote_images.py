"""A remote run's images at the training size, made in Blender (no PIL there): read, scaled and
written as lossless PNG under the model's names by Blender's own image code. Checked against PIL
(what the bridge uses) on real photos; the uploads themselves are in test_remote.py."""
from __future__ import annotations

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


def _reduced(remote_images, path, size, out):
    with Image.open(path) as image:
        camera = image.size
    assert remote_images.reduce_image(str(path), str(out), camera, size)
    with Image.open(out) as image:  # a PNG, under whatever name the model gives the photo
        assert image.format == "PNG" and image.mode == "RGB" and image.size == size
        return np.asarray(image, int)


def test_photos_are_reduced_as_the_bridge_would(blender_with_splatwork, splatwork, tmp_path):
    remote_images = splatwork.addon.training.remote_images
    for path in _photos():
        with Image.open(path) as image:
            pil = image.convert("RGB")
        for factor in (2, 4, 8):  # whole factors: what the bridge's own BOX resize computes, within 2 levels
            size = (pil.width // factor, pil.height // factor)
            ours = _reduced(remote_images, path, size, tmp_path / "view.jpg")
            box = np.asarray(pil.resize(size, Image.BOX), int)
            assert np.abs(ours - box).max() <= 2 and np.abs(ours - box).mean() < 0.5, (path, factor)
        size = (round(pil.width / 3), round(pil.height / 3))  # not whole: the two differ a little at edges
        ours = _reduced(remote_images, path, size, tmp_path / "view.jpg")
        assert np.abs(ours - np.asarray(pil.resize(size, Image.BOX), int)).mean() < 1.0
    assert sorted(os.listdir(tmp_path)) == ["view.jpg"], "a temporary file was left behind"


def test_images_with_alpha_or_not_larger_go_as_they_are(blender_with_splatwork, splatwork, tmp_path):
    # Blender's scaler averages straight alpha (invisible colour would bleed into the edges): such
    # images go as they are and the bridge composites, then reduces, there.
    remote_images = splatwork.addon.training.remote_images
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[:, ::2] = (255, 0, 0, 0)
    rgba[:, 1::2] = (0, 0, 255, 255)
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    assert not remote_images.reduce_image(str(tmp_path / "cutout.png"), str(tmp_path / "out.png"), (60, 40), (30, 20))
    Image.fromarray(rgba[..., :3]).save(tmp_path / "small.png")
    assert not remote_images.reduce_image(str(tmp_path / "small.png"), str(tmp_path / "out.png"), (60, 40), (60, 40))
    assert not (tmp_path / "out.png").exists()


def test_each_photo_goes_as_the_smaller_file(blender_with_splatwork, splatwork, tmp_path):
    # These web photos are strongly compressed JPEGs: at half the size a lossless PNG often outweighs
    # them, and then the photo goes as it is (the bridge reduces it); at an eighth it never does.
    protocol, remote_images = splatwork.bridge.protocol, splatwork.addon.training.remote_images
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


def test_a_cut_short_jpeg_goes_as_it_is_for_the_bridge_to_refuse(blender_with_splatwork, splatwork, tmp_path):
    # Blender decodes a truncated JPEG without an error (grey below the cut); PIL, the bridge's reader,
    # refuses it naming the file. So it is not reduced here: the run fails there with that message.
    remote_images = splatwork.addon.training.remote_images
    photo = tmp_path / "photo.jpg"  # a textured JPEG made here: what matters is how it is cut, not what it shows
    rng = np.random.default_rng(3)
    texture = rng.integers(0, 256, (75, 100, 3), dtype=np.uint8)
    Image.fromarray(texture).resize((400, 300), Image.Resampling.BICUBIC).save(photo, quality=90)
    data = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with Image.open(photo) as image:
        camera = image.size
    half = (camera[0] // 2, camera[1] // 2)
    assert not remote_images.reduce_image(str(cut), str(tmp_path / "out.png"), camera, half)
    with pytest.raises(OSError, match="truncated"), Image.open(cut) as image:
        image.load()
    padded = tmp_path / "padded.jpg"  # a whole JPEG with a little padding after its end is reduced
    padded.write_bytes(data + bytes(100))
    assert remote_images.reduce_image(str(padded), str(tmp_path / "out.png"), camera, half)


def test_an_unreadable_image_is_an_error_naming_the_file(blender_with_splatwork, splatwork, tmp_path):
    remote_images = splatwork.addon.training.remote_images
    bad = tmp_path / "view_007.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(splatwork.addon.training.remote.RemoteError, match="view_007.jpg") as info:
        remote_images.reduce_image(str(bad), str(tmp_path / "out.png"), (8, 8), (4, 4))
    assert "cannot read" in info.value.message and info.value.hint
    with pytest.raises(splatwork.addon.training.remote.RemoteError, match="missing.jpg"):
        remote_images.reduce_image(str(tmp_path / "missing.jpg"), str(tmp_path / "out.png"), (8, 8), (4, 4))


def test_the_cache_keeps_under_its_limit_oldest_first_but_never_the_run_being_sent(splatwork, tmp_path):
    prune = splatwork.addon.training.remote_images.prune_cache
    for i in range(5):
        path = tmp_path / f"copy{i}.png"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(10**18 + i, 10**18 + i))  # copy0 is the oldest
    removed = prune(str(tmp_path), 250, keep={str(tmp_path / "copy0.png")})
    assert removed == [str(tmp_path / "copy1.png"), str(tmp_path / "copy2.png"), str(tmp_path / "copy3.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy0.png", "copy4.png"]
    assert prune(str(tmp_path), 10**9) == []
