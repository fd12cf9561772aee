"""The data layer: IDX files, the two TFDS builders, the split policy and overlap.

Everything runs on a few dozen generated images in temporary directories and
a temporary TFDS data dir; nothing reaches the network or ~/tensorflow_datasets.
The notMNIST sample's IDX pair ships in the package (tf_mlp/data/notmnist_sample);
only the test of its archive layout, which is not shipped, needs ../shared and
skips without it. The full Fashion-MNIST test is marked real_data.
"""

import dataclasses
import gzip
import logging
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests import data_fixtures as fixtures
from tests.real_data import must_not_connect
from tf_mlp import data
from tf_mlp.config import DataConfig
from tf_mlp.data import catalog, idx, idx_builder, local_builder, notmnist_builder, overlap, sources
from tf_mlp.data.splits import DataSplits, Split
from tf_mlp.errors import DataError

needs_sample_archive = pytest.mark.skipif(
    not (fixtures.SHARED_SAMPLE / "notMNIST_sample.tar.gz").is_file(),
    reason=f"the notMNIST sample's archive layout (not shipped in the package) is not at {fixtures.SHARED_SAMPLE}",
)


def load(tmp_path, source, **fields) -> DataSplits:
    fields.setdefault("name", "idx")
    return data.load_splits(DataConfig(source_dir=str(source), data_dir=str(tmp_path / "tfds"), **fields))


def raises_one_line(match, function, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as caught:
        function(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# --- IDX files -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    images, labels = fixtures.make_images(12)
    idx.write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images)
    idx.write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels.astype(np.int64))  # int64 in memory is fine
    assert (tmp_path / f"images-idx3-ubyte{suffix}").read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")
    np.testing.assert_array_equal(idx.read_idx(tmp_path / f"images-idx3-ubyte{suffix}"), images)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / f"labels-idx1-ubyte{suffix}"), labels)


def test_write_idx_replaces_a_file_whole_and_synced_or_not_at_all(tmp_path, monkeypatch):
    images, _ = fixtures.make_images(4)
    path = tmp_path / "images-idx3-ubyte"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda descriptor: (synced.append(descriptor), real_fsync(descriptor)))
    idx.write_idx(path, images)
    assert len(synced) == 2  # the file's data, then the directory's rename
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600
    old = path.read_bytes()

    def crash(source, target):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        idx.write_idx(path, images[:1])
    assert path.read_bytes() == old and [item.name for item in tmp_path.iterdir()] == [path.name]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    images, _ = fixtures.make_images(3)
    idx.write_idx(tmp_path / "packed.gz", images)
    (tmp_path / "packed.gz").rename(tmp_path / "no-suffix")
    (tmp_path / "plain.gz").write_bytes(gzip.decompress((tmp_path / "no-suffix").read_bytes()))
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "no-suffix"), images)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "plain.gz"), images)


def _header(magic, *dims):
    return magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in dims)


@pytest.mark.parametrize(
    "name, content, fault",
    [
        (
            "train-images-idx3-ubyte",
            _header(0x802, 2, 28) + bytes(56),
            r"wrong IDX magic number 0x00000802 \(expected 0x00000803 for images\)",
        ),
        (
            "train-labels-idx1-ubyte",
            _header(0x803, 1, 28, 28) + bytes(784),
            r"wrong IDX magic number 0x00000803 \(expected 0x00000801 for labels\)",
        ),
        (
            "train-images-idx3-ubyte",
            _header(0xD03, 1, 28, 28) + bytes(4 * 784),
            r"data type 0x0D \(float32\) is not supported",
        ),
        (
            "train-images-idx3-ubyte",
            _header(0x803, 2, 32, 32) + bytes(2 * 1024),
            r"wrong image size 32x32 \(expected 28x28\)",
        ),
        (
            "train-images-idx3-ubyte",
            _header(0x803, 3, 28, 28) + bytes(784),
            r"truncated: the header promises 3 images \(2352 bytes\) but only 784 bytes follow",
        ),
        ("train-labels-idx1-ubyte", _header(0x801, 3) + bytes(5), r"2 unexpected bytes after the 3 labels"),
        ("train-images-idx3-ubyte", b"\x89PNG\r\n", r"not an IDX file"),
        (
            "train-images-idx3-ubyte.gz",
            gzip.compress(_header(0x803, 1, 28, 28) + bytes(784), mtime=0)[:-12],
            r"corrupt or truncated gzip data",
        ),
    ],
)
def test_bad_idx_file_names_file_and_fault(tmp_path, name, content, fault):
    (tmp_path / name).write_bytes(content)
    message = raises_one_line(fault, idx.read_idx, tmp_path / name)
    assert message.startswith(f"{tmp_path / name}: ")


def test_missing_idx_file(tmp_path):
    raises_one_line(
        r"train-images-idx3-ubyte.gz: file not found", idx.read_idx, tmp_path / "train-images-idx3-ubyte.gz"
    )


def test_write_idx_refuses_what_idx_cannot_hold(tmp_path):
    raises_one_line(r"do not fit", idx.write_idx, tmp_path / "labels.gz", np.array([1, 300]))
    raises_one_line(r"wrong image size 32x32", idx.write_idx, tmp_path / "images.gz", np.zeros((1, 32, 32), np.uint8))


# --- Sources and user errors -----------------------------------------------------------


def test_bad_sources_give_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("no data here")
    (tmp_path / "file").write_text("")
    raises_one_line(
        r"unknown data set 'cifar10'; choose one of fashion_mnist, mnist, notmnist, idx",
        load,
        tmp_path,
        tmp_path,
        name="cifar10",
    )
    raises_one_line(rf"{tmp_path / 'absent'}: source directory does not exist", load, tmp_path, tmp_path / "absent")
    raises_one_line(r"source directory is not a directory", load, tmp_path, tmp_path / "file")
    raises_one_line(rf"{tmp_path / 'empty'}: source directory is empty", load, tmp_path, tmp_path / "empty")
    raises_one_line(r"other: no IDX files found", load, tmp_path, tmp_path / "other")
    raises_one_line(
        r"other: no notMNIST archives .* or IDX files found", load, tmp_path, tmp_path / "other", name="notmnist"
    )
    # notMNIST has its packaged sample; a plain IDX data set has no default place.
    raises_one_line(r"data set 'idx' needs --source-dir \(a directory of IDX files\)", data.load_splits,
                    DataConfig(name="idx", data_dir=str(tmp_path / "tfds")))


def test_half_a_pair_and_count_mismatch_name_the_files(tmp_path):
    images, labels = fixtures.make_images(20)
    idx.write_idx(tmp_path / "half" / "train-images-idx3-ubyte.gz", images)
    raises_one_line(
        r"train-images-idx3-ubyte.gz: found no matching train-labels-idx1-ubyte", load, tmp_path, tmp_path / "half"
    )
    fixtures.write_idx_pair(tmp_path / "mismatch", "", images, labels[:19])
    message = raises_one_line(r"holds 20 images but .* holds 19 labels", load, tmp_path, tmp_path / "mismatch")
    assert "images-idx3-ubyte.gz" in message and "labels-idx1-ubyte.gz" in message
    fixtures.write_idx_pair(tmp_path / "nothing", "", images[:0], labels[:0])
    fixtures.write_idx_pair(tmp_path / "letters", "", images, labels + 3)
    raises_one_line(
        r"labels-idx1-ubyte.gz: label 12 is out of range \(expected 0..9\)", load, tmp_path, tmp_path / "letters"
    )
    raises_one_line(r"images-idx3-ubyte.gz: holds no images", load, tmp_path, tmp_path / "nothing")


def test_labels_txt_names_the_classes(tmp_path):
    fixtures.make_idx_dir(tmp_path / "src")
    assert load(tmp_path, tmp_path / "src", validation_size=5).class_names == tuple("0123456789")
    (tmp_path / "src" / "labels.txt").write_text("\n".join(f"class {k}" for k in range(10)) + "\n")
    assert load(tmp_path, tmp_path / "src", validation_size=5).class_names[3] == "class 3"
    (tmp_path / "src" / "labels.txt").write_text("only\nthree\nnames\n")
    raises_one_line(r"labels.txt: has 3 class names \(expected 10", load, tmp_path, tmp_path / "src")


def test_kmnist_reads_local_idx_files_and_its_class_names_file(tmp_path):
    fixtures.make_idx_dir(tmp_path / "kmnist", train=40, test=20)
    splits = load(tmp_path, tmp_path / "kmnist", name="kmnist", validation_size=8)
    assert splits.sizes() == {"train": 32, "validation": 8, "test": 20}
    assert splits.class_names[:3] == ("o", "ki", "su")
    hiragana = "おきすつなはまやれを"
    (tmp_path / "kmnist" / "labels.txt").write_text("".join(f"{name}\n" for name in hiragana), encoding="utf-8")
    assert load(tmp_path, tmp_path / "kmnist", name="kmnist", validation_size=8).class_names == tuple(hiragana)
    raises_one_line(r"data set 'kmnist' needs --source-dir \(a directory of IDX files\)", data.load_splits,
                    DataConfig(name="kmnist", data_dir=str(tmp_path / "tfds")))


def test_catalogue_fallback_fails_fast_offline(tmp_path, monkeypatch):
    not_installed = dataclasses.replace(catalog.CATALOG["fashion_mnist"], default_source=tmp_path / "not-installed")
    monkeypatch.setitem(catalog.CATALOG, "fashion_mnist", not_installed)
    monkeypatch.setattr(sources, "_reachable", lambda host, timeout=5.0: False)
    with pytest.raises(DataError, match="install Debian's dataset-fashion-mnist package or pass --source-dir"):
        data.load_splits(DataConfig(name="fashion_mnist", data_dir=str(tmp_path / "tfds")))


# --- The IDX builder: layouts, staleness, split policy -------------------------------------


def test_idx_directory_keeps_test_split_and_draws_validation(tmp_path):
    arrays = fixtures.make_idx_dir(tmp_path / "src", train=40, test=20)
    for name in ("idx", "fashion_mnist", "mnist"):
        splits = load(tmp_path, tmp_path / "src", name=name, validation_size=8)
        assert splits.sizes() == {"train": 32, "validation": 8, "test": 20}
        assert splits.class_names == catalog.CATALOG[name].class_names
    assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int64
    np.testing.assert_array_equal(splits.test.images, arrays["test"][0])  # source order is kept
    together = np.concatenate([splits.train.images, splits.validation.images])
    assert fixtures.sorted_pairs(
        together, np.concatenate([splits.train.labels, splits.validation.labels])
    ) == fixtures.sorted_pairs(*arrays["train"])
    raises_one_line(r"validation_size 40 leaves no training data", load, tmp_path, tmp_path / "src", validation_size=40)


def test_prepared_data_follows_changes_of_the_source(tmp_path, monkeypatch):
    fixtures.make_idx_dir(tmp_path / "src", seed=0)
    first = load(tmp_path, tmp_path / "src", validation_size=0)
    changed = fixtures.make_idx_dir(tmp_path / "src", seed=7)
    for path in (tmp_path / "src").iterdir():  # a distinct mtime even on coarse-grained file systems
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = load(tmp_path, tmp_path / "src", validation_size=0)
    assert not np.array_equal(first.test.images, second.test.images)
    np.testing.assert_array_equal(second.test.images, changed["test"][0])

    # Unchanged source: read back without preparing again.
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", _must_not_prepare)
    np.testing.assert_array_equal(load(tmp_path, tmp_path / "src", validation_size=0).test.images, changed["test"][0])


def _must_not_prepare(*args, **kwargs):
    raise AssertionError("the unchanged source was prepared again")


def test_single_pair_gets_a_seeded_stratified_holdout(tmp_path):
    fixtures.write_idx_pair(tmp_path / "src", "", *fixtures.make_images(200))
    splits = load(tmp_path, tmp_path / "src", test_fraction=0.15, validation_size=5000, seed=3)
    # 15% of 20 per class = 3 per class; validation is capped at 10% of the remaining 170.
    assert splits.sizes() == {"train": 153, "validation": 17, "test": 30}
    assert np.bincount(splits.test.labels, minlength=10).tolist() == [3] * 10
    again = load(tmp_path, tmp_path / "src", test_fraction=0.15, validation_size=5000, seed=3)
    np.testing.assert_array_equal(again.validation.images, splits.validation.images)
    other_seed = load(tmp_path, tmp_path / "src", test_fraction=0.15, validation_size=5000, seed=4)
    assert not np.array_equal(other_seed.test.images, splits.test.images)
    smaller_validation = load(tmp_path, tmp_path / "src", test_fraction=0.15, validation_size=4, seed=3)
    np.testing.assert_array_equal(smaller_validation.test.images, splits.test.images)  # test does not move
    assert smaller_validation.sizes() == {"train": 166, "validation": 4, "test": 30}


# --- Overlap ---------------------------------------------------------------------------


def test_overlap_mask_finds_planted_duplicates():
    train, _ = fixtures.make_images(20, seed=1)
    other, _ = fixtures.make_images(10, seed=2)
    other[[1, 4, 8]] = train[[0, 5, 19]]
    assert np.flatnonzero(overlap.overlap_mask(train, other)).tolist() == [1, 4, 8]


def test_overlap_report_counts_between_and_within_splits():
    images, labels = fixtures.make_images(30, seed=3)
    train, validation, test = (
        Split(images[:20].copy(), labels[:20]),
        Split(images[20:25].copy(), labels[20:25]),
        Split(images[25:].copy(), labels[25:]),
    )
    train.images[1] = train.images[0]  # one repeat within train
    validation.images[0] = train.images[7]
    test.images[[0, 1]] = train.images[[2, 3]]
    test.images[2] = validation.images[4]
    report = overlap.overlap_report(DataSplits(train, validation, test, catalog.DIGITS, "idx"))
    assert report["validation_in_train"] == 1 and report["test_in_train"] == 2 and report["test_in_validation"] == 1
    assert report["within"] == {"train": 1, "validation": 0, "test": 0}
    assert report["sizes"] == {"train": 20, "validation": 5, "test": 5}


def test_drop_overlap_removes_copies_of_training_images(tmp_path):
    arrays = fixtures.make_idx_dir(tmp_path / "src", train=40, test=20)
    train_images, train_labels = arrays["train"]
    test_images, test_labels = arrays["test"]
    test_images[[0, 3, 6, 9]] = train_images[[10, 11, 12, 13]]
    train_images[[20, 21]] = train_images[[30, 31]]  # copies inside train: validation may catch one
    fixtures.write_idx_pair(tmp_path / "src", "t10k-", test_images, test_labels)
    fixtures.write_idx_pair(tmp_path / "src", "train-", train_images, train_labels)
    no_validation = load(tmp_path, tmp_path / "src", validation_size=0, drop_overlap=True)
    assert no_validation.dropped_overlap == {"validation": 0, "test": 4} and len(no_validation.test) == 16
    kept = load(tmp_path, tmp_path / "src", validation_size=10)
    expected = {
        name: int(overlap.overlap_mask(kept.train.images, kept.split(name).images).sum())
        for name in ("validation", "test")
    }
    dropped = load(tmp_path, tmp_path / "src", validation_size=10, drop_overlap=True)
    assert dropped.dropped_overlap == expected
    assert len(dropped.test) == 20 - expected["test"] and len(dropped.validation) == 10 - expected["validation"]
    assert not overlap.overlap_mask(dropped.train.images, dropped.test.images).any()
    assert kept.dropped_overlap == {}


# --- notMNIST archives -----------------------------------------------------------------


def test_archive_skips_and_counts_bad_pngs(tmp_path, caplog):
    images, labels = fixtures.make_images(30, seed=5)
    fixtures.write_tar(tmp_path / "src" / "letters.tar.gz", fixtures.notmnist_members(images, labels, "letters"))
    with caplog.at_level(logging.WARNING, logger=notmnist_builder.__name__):
        splits = load(tmp_path, tmp_path / "src", name="notmnist", validation_size=5)
    assert "skipped 2 unusable PNG files (1 unreadable, 1 zero-byte)" in caplog.text
    assert splits.skipped_files == 2 and splits.class_names == tuple("ABCDEFGHIJ")
    assert sum(splits.sizes().values()) == 30
    # The count is stored with the prepared data, so a cached load still reports it.
    assert load(tmp_path, tmp_path / "src", name="notmnist", validation_size=5).skipped_files == 2


def test_extracted_folders_read_like_the_archive(tmp_path):
    images, labels = fixtures.make_images(30, seed=6)
    members = fixtures.notmnist_members(images, labels, "notMNIST_small")
    fixtures.write_tar(tmp_path / "archive" / "notMNIST_small.tar.gz", members)
    fixtures.write_folder(tmp_path / "folder", members)
    from_archive = local_builder.prepare(
        notmnist_builder.NotmnistArchives, tmp_path / "archive", str(tmp_path / "tfds")
    )
    from_folder = local_builder.prepare(notmnist_builder.NotmnistArchives, tmp_path / "folder", str(tmp_path / "tfds"))
    archive_arrays = local_builder.read_split(from_archive, "train")
    assert fixtures.sorted_pairs(*archive_arrays) == fixtures.sorted_pairs(
        *local_builder.read_split(from_folder, "train")
    )
    assert fixtures.sorted_pairs(*archive_arrays) == fixtures.sorted_pairs(images, labels)
    assert local_builder.skipped_files(from_folder, ["train"]) == 2


@pytest.mark.parametrize("builder_class", [idx_builder.IdxImages, notmnist_builder.NotmnistArchives])
def test_the_batched_record_reader_gives_what_tfds_as_dataset_gives(tmp_path, builder_class):
    # read_split parses our builders' records in one batched op instead of TFDS's example-at-a-time
    # as_dataset; the two must give the same arrays, dtypes and order, split by split.
    images, labels = fixtures.make_images(30, seed=7)
    if builder_class is idx_builder.IdxImages:
        fixtures.make_idx_dir(tmp_path / "src", train=50, test=20)
    else:
        fixtures.write_tar(tmp_path / "src" / "notMNIST_small.tar.gz",
                           fixtures.notmnist_members(images, labels, "notMNIST_small", bad=False))
    builder = local_builder.prepare(builder_class, tmp_path / "src", str(tmp_path / "tfds"))
    for split in builder.info.splits:
        reference = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        read_images, read_labels = local_builder.read_split(builder, split)
        assert read_images.dtype == np.uint8 and read_labels.dtype == np.int64
        np.testing.assert_array_equal(read_images, reference["image"])
        np.testing.assert_array_equal(read_labels, reference["label"])


def test_a_damaged_prepared_split_is_a_one_line_error_naming_it(tmp_path):
    fixtures.make_idx_dir(tmp_path / "src")
    builder = local_builder.prepare(idx_builder.IdxImages, tmp_path / "src", str(tmp_path / "tfds"))
    records = builder.data_path / builder.info.splits["train"].filenames[0]
    records.write_bytes(records.read_bytes()[:-100])
    message = raises_one_line(r"the prepared train split cannot be read", local_builder.read_split, builder, "train")
    assert str(builder.data_path) in message and "to prepare it again" in message


def test_damaged_archive_is_reported_not_passed_over(tmp_path):
    images, labels = fixtures.make_images(10, seed=4)
    fixtures.write_tar(tmp_path / "src" / "notMNIST_small.tar.gz", fixtures.notmnist_members(images, labels, "small"))
    archive = tmp_path / "src" / "notMNIST_small.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-200])
    message = r"notMNIST_small.tar.gz: corrupt or truncated archive"
    raises_one_line(message, load, tmp_path, tmp_path / "src", name="notmnist")


def test_large_and_small_archives_give_course_sizes(tmp_path):
    large, large_labels = fixtures.make_images(60, seed=8)
    small, small_labels = fixtures.make_images(20, seed=9)
    fixtures.write_tar(
        tmp_path / "src" / "notMNIST_large.tar.gz", fixtures.notmnist_members(large, large_labels, "notMNIST_large")
    )
    fixtures.write_tar(
        tmp_path / "src" / "notMNIST_small.tar.gz",
        fixtures.notmnist_members(small, small_labels, "notMNIST_small", bad=False),
    )
    splits = load(tmp_path, tmp_path / "src", name="notmnist", train_size=40, validation_size=10, test_size=15)
    assert splits.sizes() == {"train": 40, "validation": 10, "test": 15} and splits.skipped_files == 2
    assert set(fixtures.sorted_pairs(splits.test.images, splits.test.labels)) <= set(
        fixtures.sorted_pairs(small, small_labels)
    )
    capped = load(tmp_path, tmp_path / "src", name="notmnist", validation_size=10)  # train_size 200000 > 50 left
    assert capped.sizes() == {"train": 50, "validation": 10, "test": 20}
    fixtures.write_tar(tmp_path / "src" / "extra.tar.gz", {"extra/A/x.png": fixtures.png_bytes(large[0])})
    raises_one_line(
        r"found several notMNIST sources \(extra.tar.gz, notMNIST_large.tar.gz, notMNIST_small.tar.gz\)",
        load,
        tmp_path,
        tmp_path / "src",
        name="notmnist",
    )


# --- The shared notMNIST sample and the real Fashion-MNIST ------------------------------------


@needs_sample_archive
def test_sample_archive_layout_holds_the_packaged_idx_images(tmp_path):
    archive = local_builder.prepare(notmnist_builder.NotmnistArchives, fixtures.SHARED_SAMPLE, str(tmp_path / "tfds"))
    archive_images, archive_labels = local_builder.read_split(archive, "train")
    assert archive_images.shape == (8000, 28, 28) and np.bincount(archive_labels).tolist() == [800] * 10
    packaged_images = idx.read_idx(catalog.PACKAGED_NOTMNIST / "images-idx3-ubyte.gz")
    packaged_labels = idx.read_idx(catalog.PACKAGED_NOTMNIST / "labels-idx1-ubyte.gz", kind="labels")
    assert fixtures.sorted_pairs(archive_images, archive_labels) == fixtures.sorted_pairs(packaged_images,
                                                                                       packaged_labels)


def test_packaged_sample_is_the_default_notmnist_source_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_reachable", must_not_connect)
    splits = data.load_splits(DataConfig(name="notmnist", data_dir=str(tmp_path / "tfds")))
    assert splits.sizes() == {"train": 6120, "validation": 680, "test": 1200}
    assert splits.class_names == catalog.CATALOG["notmnist"].class_names
    assert np.bincount(splits.test.labels).tolist() == [120] * 10 and splits.skipped_files == 0
    report = overlap.overlap_report(splits)
    assert report["test_in_train"] > 0 and report["within"]["train"] > 0  # the sample has duplicates


def test_packaged_sample_ships_with_its_licence_and_attribution():
    import configparser

    shipped = sorted(path.name for path in catalog.PACKAGED_NOTMNIST.iterdir())
    assert shipped == ["LICENSE", "README.md", "images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"]
    assert (catalog.PACKAGED_NOTMNIST / "LICENSE").read_text().startswith("The MIT License (MIT)\n\nCopyright (c) "
                                                                          "2016 David Flanagan")
    assert "davidflanagan/notMNIST-to-MNIST" in (catalog.PACKAGED_NOTMNIST / "README.md").read_text()
    setup = configparser.ConfigParser()
    setup.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    patterns = setup["options.package_data"]["tf_mlp.data"].split()
    package_dir = catalog.PACKAGED_NOTMNIST.parent
    for name in shipped:  # every file is matched by a package_data pattern, so wheels carry it
        assert any((package_dir / "notmnist_sample" / name).match(str(package_dir / pattern)) for pattern in patterns)
    if fixtures.SHARED_SAMPLE.is_dir():  # copied unchanged
        for name in ("LICENSE", "images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"):
            assert (catalog.PACKAGED_NOTMNIST / name).read_bytes() == (fixtures.SHARED_SAMPLE / name).read_bytes()


def test_train_notmnist_needs_no_source_dir(tmp_path):
    from tests.commands import run_in_process

    result = run_in_process("train", "--data", "notmnist", "--preset", "logistic", "--epochs", "1",
                            "--data-dir", tmp_path / "tfds", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith("test accuracy: ")
    assert "(1200 test images, 7850 parameters" in result.stdout.splitlines()[-1]


@pytest.mark.real_data
def test_fashion_mnist_from_debian_files_without_network(fashion_mnist_run):
    # Prepared once per session in a fresh TFDS directory, with sources._reachable failing the test if called.
    splits = fashion_mnist_run.splits
    assert splits.sizes() == {"train": 55000, "validation": 5000, "test": 10000}
    assert splits.class_names == catalog.CATALOG["fashion_mnist"].class_names
    test_images = idx.read_idx(catalog.DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(splits.test.images, test_images)

