import numpy as np
import tensorflow as tf

from tests import synthetic
from tf_mlp.pipeline import ResidentSplit, augment


def _dot_images(count):
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 10, 5] = 255
    return images


def test_augment_mirrors_and_shifts_within_bounds_and_is_seeded():
    images = _dot_images(64)
    flipped = augment(tf.constant(images), [0, 1], flip=True, shift=0).numpy()
    columns = {int(np.argwhere(image)[0][1]) for image in flipped}
    assert columns == {5, 22}  # each image either kept or mirrored (27 - 5)
    shifted = augment(tf.constant(images), [0, 1], flip=False, shift=2).numpy()
    positions = np.array([np.argwhere(image)[0] for image in shifted])
    assert np.abs(positions - [10, 5]).max() <= 2 and len({tuple(p) for p in positions}) > 1
    assert shifted.dtype == np.uint8 and shifted.sum(axis=(1, 2)).tolist() == [255] * 64  # nothing lost at the edges here
    np.testing.assert_array_equal(shifted, augment(tf.constant(images), [0, 1], flip=False, shift=2).numpy())


def test_epoch_is_a_seeded_permutation_and_skipping_resumes_it():
    split = synthetic.make_split(100, seed=0)
    resident = ResidentSplit(split)
    labels = np.concatenate([batch[1].numpy() for batch in resident.epoch(10, seed=3, epoch=0)])
    assert sorted(labels.tolist()) == sorted(split.labels.tolist())
    again = np.concatenate([batch[1].numpy() for batch in resident.epoch(10, seed=3, epoch=0)])
    np.testing.assert_array_equal(labels, again)
    next_epoch = np.concatenate([batch[1].numpy() for batch in resident.epoch(10, seed=3, epoch=1)])
    assert not np.array_equal(labels, next_epoch)
    full = [batch[0].numpy() for batch in resident.epoch(10, seed=3, epoch=0, flip=True, shift=1)]
    resumed = [batch[0].numpy() for batch in resident.epoch(10, seed=3, epoch=0, skip_batches=4, flip=True, shift=1)]
    assert len(resumed) == 6
    for original, after_restart in zip(full[4:], resumed):
        np.testing.assert_array_equal(original, after_restart)


def test_in_order_covers_every_example_once_with_a_partial_last_batch():
    split = synthetic.make_split(25, seed=1)
    batches = list(ResidentSplit(split).in_order(10))
    assert [len(batch[1]) for batch in batches] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([batch[0].numpy() for batch in batches]), split.images)
