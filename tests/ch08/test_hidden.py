"""Chapter 08, hidden tests: the public checks again on held-out rows, files, settings,
orders and seeds, the workers, and the accuracy of a graded run. The guard is checked by
the public tests alone (importing the file, and running it under spawn)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from grader.remote import is_instance, type_name
from grader.testing import assert_close

from .test_public import (N_FEATURES, N_ROWS, check_length, check_sample, tensor_dataset,  # noqa: F401 - fixtures
                          check_lecture_loop, reference_model,
                          diabetes_path, impl, probes, table)


# --------------------------------------------------------------------------- dataset

@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_held_out_samples_match_the_file(impl, probes, diabetes_path, table):
    dataset = impl.DiabetesDataset(diabetes_path)
    check_length(len(dataset), table, "the lecture's file")
    for i in (177, 301, 444):
        check_sample(dataset[i], table, i)
    inputs, labels = probes.first_batch(dataset, batch_size=7, shuffle=False)
    assert labels.shape == (7, 1), \
        f"a DataLoader batch of labels has shape {list(labels.shape)}, expected [7, 1]: keep the label 2-D"
    assert_close(labels, table[:7, -1:], "the first batch of labels")


@pytest.mark.task("ch08.dataset")
@pytest.mark.points(1)
def test_dataset_reads_held_out_files(probes):
    rng = np.random.default_rng(1)
    for rows, features in [(9, 4), (13, 2)]:
        small = np.concatenate([rng.uniform(-1, 1, (rows, features)), rng.integers(0, 2, (rows, 1))], axis=1)
        small = np.round(small, 6).astype(np.float32)  # as written to the file (np.savetxt, fmt="%.6f")
        what = f"a file of {rows} rows and {features + 1} columns"
        check_length(probes.dataset_of_table(small), small, what)
        for i in (0, rows // 2, rows - 1):
            check_sample(probes.dataset_of_table(small, index=i), small, i, what)


# --------------------------------------------------------------------------- loader

@pytest.mark.task("ch08.loader")
@pytest.mark.points(2)
def test_loader_passes_on_held_out_settings(impl, probes):
    dataset = TensorDataset(torch.arange(50.0).reshape(25, 2), torch.arange(25.0).reshape(25, 1))
    loader, same_dataset = probes.make_loader_keeping(dataset, batch_size=10, shuffle=False, num_workers=0)
    assert is_instance(loader, DataLoader), f"make_loader returned {type_name(loader)}, expected a DataLoader"
    assert same_dataset, "the loader should read the dataset it is given"
    assert loader.batch_size == 10, \
        f"make_loader(batch_size=10) built a loader with batch_size={loader.batch_size}: pass batch_size on"
    assert is_instance(loader.sampler, SequentialSampler), \
        "make_loader(shuffle=False) built a shuffling loader: pass shuffle=shuffle on"
    assert loader.num_workers == 0, \
        f"make_loader(num_workers=0) built a loader with num_workers={loader.num_workers}: pass num_workers on"
    sizes = [len(x) for x, _ in loader]
    assert sizes == [10, 10, 5], f"batches of sizes {sizes}, expected [10, 10, 5] (keep the last, smaller batch)"
    shuffled = impl.make_loader(dataset, batch_size=7, shuffle=True, num_workers=1)
    assert is_instance(shuffled.sampler, RandomSampler), \
        "make_loader(shuffle=True) built a loader that does not shuffle: pass shuffle=shuffle on"
    assert shuffled.batch_size == 7 and shuffled.num_workers == 1, \
        f"make_loader(batch_size=7, num_workers=1) built batch_size={shuffled.batch_size}, " \
        f"num_workers={shuffled.num_workers}: pass batch_size and num_workers on"


@pytest.mark.task("ch08.loader")
@pytest.mark.points(1)
def test_loader_with_workers_sees_every_sample_once(impl, table):
    loader = impl.make_loader(tensor_dataset(table), batch_size=100, shuffle=True, num_workers=2)
    assert loader.num_workers == 2, "make_loader(num_workers=2) should start two workers"
    labels = torch.cat([y for _, y in loader])
    assert labels.shape == (N_ROWS, 1), \
        f"one epoch with two workers gave {labels.shape[0]} labels, expected {N_ROWS}"
    assert float(labels.sum()) == pytest.approx(float(table[:, -1].sum())), \
        "one shuffled epoch should visit every sample exactly once"


# --------------------------------------------------------------------------- train

@pytest.mark.task("ch08.train")
@pytest.mark.points(2)
def test_train_matches_the_lecture_loop_on_held_out_settings(impl, table):
    # the rows in another order, batches of 28 (19 of them), other starting weights; as many
    # epochs and the same lr as the public test, so answers keyed on them are caught
    rows = np.random.default_rng(5).permutation(len(table))
    loader = DataLoader(tensor_dataset(table[rows]), batch_size=28, shuffle=False)
    check_lecture_loop(impl, loader, reference_model(N_FEATURES, seed=3), epochs=4, lr=2.0)
    small = DataLoader(tensor_dataset(table[rows[:90]]), batch_size=25, shuffle=False)  # 25, 25, 25, 15
    check_lecture_loop(impl, small, reference_model(N_FEATURES, seed=4), epochs=3, lr=0.7)


@pytest.mark.task("ch08.train")
@pytest.mark.points(1)
def test_train_learns_the_rows_in_another_order(probes, table):
    rows = np.random.default_rng(5).permutation(len(table))
    x, y = torch.from_numpy(table[rows, :-1]), torch.from_numpy(table[rows, -1:])
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    model = reference_model(N_FEATURES, seed=3)
    history, weights = probes.train_and_weights(model, loader, epochs=16, lr=4.0)
    model.load_state_dict(weights)  # the student's trained weights, evaluated here
    with torch.no_grad():
        accuracy = ((model(x) > 0.5) == (y > 0.5)).float().mean().item()
    assert history[-1] < history[0], \
        f"the mean batch loss went from {history[0]:.4f} to {history[-1]:.4f}: it should decrease; " \
        "is optimizer.step() called after loss.backward() for every batch?"
    assert accuracy >= 0.77, \
        f"after 16 epochs at lr=4.0 the model is right on {accuracy:.1%} of the samples, expected at " \
        "least 77% (always answering 0 gives 66.7%)"
