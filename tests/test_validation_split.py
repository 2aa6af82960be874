"""data.validation_fraction: a fixed, stratified validation split carved from the training split."""

import numpy as np
import pytest

from labelwise.data import make_dataset
from labelwise.data.pipeline import stratified_holdout
from tests.helpers import load_config


def test_stratified_holdout_by_hand():
  labels = np.array([0] * 10 + [1] * 20 + [2] * 5)
  fit, held = stratified_holdout(labels, 0.2)
  assert np.bincount(labels[held]).tolist() == [2, 4, 1]  # round(0.2 * n_c) per class
  assert sorted(np.concatenate([fit, held]).tolist()) == list(range(35))
  assert not set(fit) & set(held)
  again, _ = stratified_holdout(labels, 0.2)
  np.testing.assert_array_equal(fit, again)  # fixed: no dependence on a run's seed
  with pytest.raises(ValueError, match="validation_fraction"):
    stratified_holdout(labels, 1.0)


def test_dataset_carves_validation_out_of_train():
  c = load_config("digits_ce", "runlocal", data__validation_fraction=0.1)
  ds = make_dataset(c)
  full = make_dataset(load_config("digits_ce", "runlocal")).train
  assert ds.train.num_examples + ds.validation.num_examples == full.num_examples
  fit_rows, held_rows = ds.train.rows, ds.validation.rows
  assert not set(fit_rows.tolist()) & set(held_rows.tolist())
  val = ds.validation.all()
  np.testing.assert_array_equal(val["input"], full.get(held_rows)["input"])
  np.testing.assert_array_equal(val["index"], np.arange(len(held_rows)))  # renumbered
  # the split is the same whatever the run's seed, and training batches never touch it
  other = make_dataset(load_config("digits_ce", "runlocal", seed=7,
                                   data__validation_fraction=0.1))
  np.testing.assert_array_equal(other.validation.rows, held_rows)
  for step in range(ds.steps_per_epoch):
    assert ds.train_indices(step).max() < ds.train.num_examples
  # stratified: class shares of validation and training agree within one example per class
  labels = full.all()["label"]
  counts = np.bincount(labels[held_rows], minlength=10)
  np.testing.assert_allclose(counts, 0.1 * np.bincount(labels, minlength=10), atol=0.51)
  assert ds.split(ds.validation.split) is ds.validation
