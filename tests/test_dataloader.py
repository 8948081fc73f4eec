"""DataLoader: each epoch covers every sample once, seeds reproduce, epochs differ, bad arguments are named."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_np.data import DataLoader


def indexed_dataset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """X row i is (i, -i) as float32, y[i] = i: every batch shows which samples it holds and that X, y agree."""
    ids = np.arange(n)
    return np.stack([ids, -ids], axis=1).astype(np.float32), ids


def epoch(loader: DataLoader) -> list[tuple[np.ndarray, ...]]:
    return list(loader)


@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 70) | st.none(),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_sample_exactly_once_per_epoch(n, batch_size, shuffle, seed):
    X, y = indexed_dataset(n)
    loader = DataLoader((X, y), batch_size=batch_size, shuffle=shuffle, generator=seed)
    for _ in range(2):
        batches = epoch(loader)
        assert len(batches) == len(loader) == -(-n // (batch_size or n))
        ids = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(ids), y)
        if not shuffle:
            np.testing.assert_array_equal(ids, y)
        for Xb, yb in batches:
            assert Xb.dtype == np.float32 and yb.dtype == y.dtype
            np.testing.assert_array_equal(Xb[:, 0], yb)  # rows of X stay paired with their labels
            assert len(yb) == (batch_size or n) or yb is batches[-1][1]  # only the last batch may be short


@given(n=st.integers(1, 60), batch_size=st.integers(1, 60), seed=st.integers(0, 1000))
def test_drop_last_keeps_only_full_batches(n, batch_size, seed):
    if batch_size > n:
        with pytest.raises(ValueError, match="drops all"):
            DataLoader(indexed_dataset(n), batch_size=batch_size, drop_last=True)
        return
    loader = DataLoader(indexed_dataset(n), batch_size=batch_size, shuffle=True, drop_last=True, generator=seed)
    batches = epoch(loader)
    assert len(batches) == len(loader) == n // batch_size
    assert all(len(yb) == batch_size for _, yb in batches)
    ids = np.concatenate([yb for _, yb in batches])
    assert len(np.unique(ids)) == len(ids) == n // batch_size * batch_size


def test_same_seed_same_batches_and_a_generator_works_like_its_seed():
    data = indexed_dataset(50)
    loaders = [
        DataLoader(data, batch_size=8, shuffle=True, generator=7),
        DataLoader(data, batch_size=8, shuffle=True, generator=7),
        DataLoader(data, batch_size=8, shuffle=True, generator=np.random.default_rng(7)),
    ]
    runs = [[yb for _ in range(3) for _, yb in loader] for loader in loaders]
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            np.testing.assert_array_equal(a, b)


def test_each_epoch_draws_a_new_order():
    loader = DataLoader(indexed_dataset(100), batch_size=100, shuffle=True, generator=0)
    (_, first), (_, second) = next(iter(loader)), next(iter(loader))
    assert not np.array_equal(first, second)
    other_seed = DataLoader(indexed_dataset(100), batch_size=100, shuffle=True, generator=1)
    assert not np.array_equal(first, next(iter(other_seed))[1])


def test_generator_state_checkpoints_the_shuffle():
    loader = DataLoader(indexed_dataset(40), batch_size=6, shuffle=True, generator=3)
    epoch(loader)
    saved = loader.generator.bit_generator.state
    expected = [yb for _, yb in loader]
    resumed = DataLoader(indexed_dataset(40), batch_size=6, shuffle=True, generator=99)
    resumed.generator.bit_generator.state = saved
    for a, b in zip(expected, [yb for _, yb in resumed], strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_permutation_is_drawn_when_iteration_starts():
    loader = DataLoader(indexed_dataset(10), shuffle=True, generator=0)
    before = loader.generator.bit_generator.state
    iterator = iter(loader)
    assert loader.generator.bit_generator.state != before
    after_iter = loader.generator.bit_generator.state
    list(iterator)
    assert loader.generator.bit_generator.state == after_iter


def test_without_shuffle_the_generator_is_untouched_and_batches_are_read_only_views():
    X, y = indexed_dataset(10)
    loader = DataLoader((X, y), batch_size=4, generator=0)
    before = loader.generator.bit_generator.state
    Xb, yb = next(iter(loader))
    assert loader.generator.bit_generator.state == before
    assert np.shares_memory(Xb, X) and not yb.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        Xb[0, 0] = 123.0
    assert X[0, 0] == 0.0


def test_full_batch_is_the_whole_dataset():
    X, y = indexed_dataset(25)
    loader = DataLoader((X, y), batch_size=None)
    assert len(loader) == 1
    ((Xb, yb),) = list(loader)
    np.testing.assert_array_equal(Xb, X)
    np.testing.assert_array_equal(yb, y)


def test_batch_size_one_yields_single_samples_with_their_dimension():
    X, y = indexed_dataset(5)
    batches = list(DataLoader((X, y), batch_size=1))
    assert len(batches) == 5
    assert all(Xb.shape == (1, 2) and yb.shape == (1,) for Xb, yb in batches)


def test_yields_tuples_in_dataset_order_for_any_number_of_arrays():
    X, y = indexed_dataset(6)
    weights = np.linspace(0, 1, 6)
    (batch,) = list(DataLoader((y, X, weights), batch_size=6))
    assert isinstance(batch, tuple) and len(batch) == 3
    np.testing.assert_array_equal(batch[2], weights)
    ((only,),) = list(DataLoader((X,), batch_size=None))
    np.testing.assert_array_equal(only, X)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "8"])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive whole number, or None for the full batch"):
        DataLoader(indexed_dataset(10), batch_size=batch_size)


def test_arrays_of_different_lengths_name_both_lengths():
    with pytest.raises(ValueError, match=r"dataset\[0\] has 10 samples but dataset\[1\] has 9"):
        DataLoader((np.zeros((10, 3)), np.zeros(9)))


def test_empty_dataset():
    with pytest.raises(ValueError, match="0 samples"):
        DataLoader((np.zeros((0, 784)), np.zeros(0)))
    with pytest.raises(ValueError, match="empty tuple"):
        DataLoader(())


def test_a_bare_array_must_be_wrapped_in_a_tuple():
    with pytest.raises(TypeError, match=r"wrap a single array as \(X,\)"):
        DataLoader(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="scalar"):
        DataLoader((np.zeros(3), np.float32(1.0)))
