import numpy as np
import tensorflow as tf

from tests import synthetic
from tf_mlp.training.pipeline import ResidentSplit, augment


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
    # Nothing lost at the edges here.
    assert shifted.dtype == np.uint8 and shifted.sum(axis=(1, 2)).tolist() == [255] * 64
    np.testing.assert_array_equal(shifted, augment(tf.constant(images), [0, 1], flip=False, shift=2).numpy())


def test_epoch_permutation_is_seeded_and_a_batch_is_a_function_of_its_indices():
    split = synthetic.make_split(100, seed=0)
    resident = ResidentSplit(split)
    permutation = resident.permutation(seed=3, epoch=0).numpy()
    assert sorted(permutation.tolist()) == list(range(100))
    np.testing.assert_array_equal(permutation, resident.permutation(seed=3, epoch=0).numpy())
    assert not np.array_equal(permutation, resident.permutation(seed=3, epoch=1).numpy())
    assert not np.array_equal(permutation, resident.permutation(seed=4, epoch=0).numpy())
    images, labels = resident.gather(tf.constant(permutation[20:30]))
    np.testing.assert_array_equal(images.numpy(), split.images[permutation[20:30]])
    np.testing.assert_array_equal(labels.numpy(), split.labels[permutation[20:30]])


def test_augmenting_a_part_of_a_batch_matches_augmenting_the_whole_batch():
    # Replicas each augment their slice of the global batch: the result must not depend on how it is split.
    images = tf.constant(synthetic.make_split(12, seed=2).images)
    whole = augment(images, [5, 7], flip=True, shift=2).numpy()
    parts = [augment(images[offset:offset + 4], [5, 7], flip=True, shift=2, offset=offset, total=12).numpy()
             for offset in (0, 4, 8)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(augment(images, [5, 8], flip=True, shift=2).numpy(), whole)


def test_in_order_covers_every_example_once_with_a_partial_last_batch():
    split = synthetic.make_split(25, seed=1)
    batches = list(ResidentSplit(split).in_order(10))
    assert [len(batch[1]) for batch in batches] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([batch[0].numpy() for batch in batches]), split.images)
