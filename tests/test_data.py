"""Data sources, the decoded-image cache, normalization statistics and batched augmentation."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from explorer.engine import data, folders, synthetic
from explorer.engine.augment import augment_batch
from explorer.engine.data import available_sources, load_dataset
from explorer.engine.dataset import channel_stats
from explorer.engine.synthetic import synthetic_images
from explorer.errors import DataError


@pytest.fixture(autouse=True)
def _fresh_memo():
    data._MEMO.clear()
    yield
    data._MEMO.clear()


def test_synthetic_is_balanced_deterministic_and_sized():
    ds = load_dataset("synthetic:200")
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (50, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.classes == synthetic.SYNTHETIC_CLASSES
    assert torch.bincount(torch.cat([ds.train_y, ds.test_y]), minlength=10).tolist() == [25] * 10
    x1, y1 = synthetic_images(50, seed=3)
    x2, y2 = synthetic_images(50, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, synthetic_images(50, seed=4)[0])
    data._MEMO.clear()
    assert load_dataset("synthetic:200").fingerprint == ds.fingerprint
    assert load_dataset("synthetic:300").fingerprint != ds.fingerprint


def test_synthetic_default_size_and_bad_size():
    ds = load_dataset("synthetic")
    assert (len(ds.train_y), len(ds.test_y)) == (2000, 500)
    with pytest.raises(DataError, match="synthetic:N"):
        load_dataset("synthetic:many")


def test_synthetic_classes_differ_in_mean_colour():
    # The task must be learnable: class-mean images differ clearly between classes.
    x, y = synthetic_images(1000)
    means = torch.stack([x[y == k].float().mean(0) for k in range(10)])
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    assert distances[~torch.eye(10, dtype=torch.bool)].min() > 100


def test_channel_stats_match_float_computation():
    x = torch.randint(0, 256, (37, 3, 5, 6), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.float() / 255
    assert mean == pytest.approx(f.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert std == pytest.approx(f.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-4)


def test_folder_rgb_28_with_test_split(image_folder_factory):
    root = image_folder_factory(classes=("cat", "dog", "emu"), per_class=4, size=(28, 28), mode="RGB")
    ds = load_dataset(f"folder:{root}")
    assert ds.name == f"folder:{root}"
    assert ds.input_shape == (3, 28, 28) and ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert ds.train_x.shape == (12, 3, 28, 28) and ds.test_x.shape == (12, 3, 28, 28)
    # class k is grey level (k + 0.5) / 3: labels must follow the folder names in sorted order
    levels = [ds.train_x[ds.train_y == k].float().mean().item() for k in range(3)]
    assert levels == sorted(levels) and levels[2] - levels[0] > 100
    assert ds.notes == []


def test_folder_greyscale_40(image_folder_factory):
    root = image_folder_factory(per_class=3, size=(40, 40), mode="L")
    ds = load_dataset(f"folder:{root}")
    assert ds.input_shape == (1, 40, 40) and len(ds.mean) == 1 and len(ds.std) == 1


def test_folder_without_test_split_holds_out_seeded_part(image_folder_factory):
    root = image_folder_factory(per_class=20, splits=("train",))
    ds = load_dataset(f"folder:{root}")
    assert len(ds.test_y) == 6 and len(ds.train_y) == 54  # 10 % of each of the 3 classes
    assert torch.bincount(ds.test_y).tolist() == [2, 2, 2]
    assert any("held out" in note for note in ds.notes)
    data._MEMO.clear()
    (root / next(root.glob(".explorer-cache-*")).name).unlink()  # decode again: same split
    again = load_dataset(f"folder:{root}")
    assert torch.equal(again.test_x, ds.test_x) and again.fingerprint == ds.fingerprint


def test_folder_of_class_folders_without_train_dir(image_folder_factory, tmp_path):
    root = image_folder_factory(per_class=10, splits=("train",))
    ds = load_dataset(f"folder:{root / 'train'}")
    assert ds.classes == ["a", "b", "c"] and len(ds.test_y) == 3


def test_empty_class_is_refused(image_folder_factory):
    root = image_folder_factory(per_class=2)
    (root / "train" / "zebra").mkdir()
    (root / "test" / "zebra").mkdir()
    (root / "train" / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"zebra has no images"):
        load_dataset(f"folder:{root}")


def test_mismatched_class_folders_are_refused(image_folder_factory):
    root = image_folder_factory(per_class=2)
    (root / "test" / "b").rename(root / "test" / "bee")
    with pytest.raises(DataError, match=r"only in train: b; only in test: bee"):
        load_dataset(f"folder:{root}")


def test_unreadable_image_is_named(image_folder_factory):
    root = image_folder_factory(per_class=2)
    bad = root / "train" / "a" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg"):
        load_dataset(f"folder:{root}")


def test_missing_or_flat_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no train/ folder"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "one" / "train" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2"):
        load_dataset(f"folder:{tmp_path / 'one'}")


def test_mixed_sizes_and_modes_are_unified(image_folder_factory):
    root = image_folder_factory("mixed", per_class=3, size=(28, 28), mode="RGB")
    image_folder_factory("mixed", classes=("a",), per_class=1, size=(40, 36), mode="L", suffix=".jpg")
    ds = load_dataset(f"folder:{root}")
    assert ds.input_shape == (3, 28, 28)  # the most common size; one greyscale image becomes RGB
    assert len(ds.train_y) == 10
    assert any("resized" in note for note in ds.notes)


def test_second_load_reads_the_cache_not_the_images(image_folder_factory, monkeypatch):
    root = image_folder_factory(per_class=3)
    first = load_dataset(f"folder:{root}")
    assert len(list(root.glob(".explorer-cache-*.pt"))) == 1
    data._MEMO.clear()
    monkeypatch.setattr(folders, "_decode_folder", lambda *a: pytest.fail("decoded again despite the cache"))
    second = load_dataset(f"folder:{root}")
    assert torch.equal(second.train_x, first.train_x) and second.fingerprint == first.fingerprint


def test_changed_folder_invalidates_the_cache(image_folder_factory):
    root = image_folder_factory(per_class=3)
    first = load_dataset(f"folder:{root}")
    image_folder_factory(classes=("a",), per_class=4, seed=5)  # overwrite a's images, add a fourth
    data._MEMO.clear()
    second = load_dataset(f"folder:{root}")
    assert len(second.train_y) == len(first.train_y) + 1 and second.fingerprint != first.fingerprint


def test_cache_falls_back_to_data_dir_when_folder_is_not_writable(image_folder_factory, tmp_path, monkeypatch):
    root = image_folder_factory(per_class=2)
    real_candidates = folders._cache_candidates

    def blocked(path, data_dir, key):
        beside, *rest = real_candidates(path, data_dir, key)
        beside.mkdir()  # a directory where the cache file would go: writing there fails like a read-only folder
        return [beside, *rest]

    monkeypatch.setattr(folders, "_cache_candidates", blocked)
    load_dataset(f"folder:{root}", data_dir=tmp_path / "data")
    assert len(list((tmp_path / "data" / "cache").glob("folder-*.pt"))) == 1


def test_unknown_source_and_offline_cifar10(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown data source"):
        load_dataset("imagenet")

    class Offline:
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("Name or service not known")

    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match=r"could not be downloaded.*cifar10:DIR.*folder:PATH.*synthetic"):
        load_dataset("cifar10", data_dir=tmp_path / "data")
    with pytest.raises(DataError, match="holds no CIFAR-10 copy"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_dir_accepts_an_image_folder(image_folder_factory):
    root = image_folder_factory(per_class=2)
    assert load_dataset(f"cifar10:{root}").classes == ["a", "b", "c"]


def test_available_sources_lists_synthetic_and_found_folders(image_folder_factory, tmp_path):
    image_folder_factory("data/pets", per_class=1)
    sources = {s["name"]: s for s in available_sources(tmp_path / "data")}
    assert sources["synthetic"]["available"] is True
    assert sources["cifar10"]["available"] is False and "internet" in sources["cifar10"]["why"]
    assert sources[f"folder:{tmp_path / 'data' / 'pets'}"]["available"] is True


def _numbered_batch(b=16, c=2, h=6, w=7) -> torch.Tensor:
    return torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)


def test_flip_is_per_sample():
    x = _numbered_batch()
    out = augment_batch(x, flip=True, crop_padding=0, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x)]
    kept = [torch.equal(o, s) for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(x)


def test_crop_shifts_each_sample_within_padding():
    x = _numbered_batch() + 1  # no zeros inside, so zeros in the output are padding
    p = 2
    out = augment_batch(x, flip=False, crop_padding=p, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts = []
    for o, src in zip(out, padded):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(o, src[:, dy:dy + x.shape[2], dx:dx + x.shape[3]])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 3  # different offsets for different samples


def test_augment_is_seeded_and_keeps_dtype():
    x = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8)
    a = augment_batch(x, True, 3, torch.Generator().manual_seed(7))
    b = augment_batch(x, True, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert augment_batch(x, False, 0) is x
