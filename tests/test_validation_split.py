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


def test_stratified_holdout_refuses_an_empty_part():
  """A fraction that rounds every class to 0 held-out examples (or to all of them), or no labels
  at all, is an error that names the counts; found by mutation testing (docs/testing.md)."""
  labels = np.array([0, 0, 1, 1, 2])
  with pytest.raises(ValueError, match=r"`data.validation_fraction`=0.1 leaves 5 training and 0 "
                                       r"validation examples; both must be > 0"):
    stratified_holdout(labels, 0.1)   # round(0.1 * 2) = round(0.1 * 1) = 0
  with pytest.raises(ValueError, match=r"`data.validation_fraction`=0.9 leaves 0 training and 5 "
                                       r"validation examples"):
    stratified_holdout(labels, 0.9)   # round(0.9 * 2) = 2, round(0.9 * 1) = 1: everything
  with pytest.raises(ValueError, match=r"leaves 0 training and 0 validation examples"):
    stratified_holdout(np.zeros(0, np.int64), 0.5)
  for bad in (0.0, -0.2, 1.5):
    with pytest.raises(ValueError, match=r"`data.validation_fraction` must be in \(0, 1\), got"):
      stratified_holdout(labels, bad)
  fit, held = stratified_holdout(labels, 0.5)  # round(0.5 * 2) = 1, round(0.5 * 1) = 0 (to even)
  assert np.bincount(labels[held], minlength=3).tolist() == [1, 1, 0] and len(fit) == 3


def test_a_config_without_validation_fraction_carves_nothing():
  """A user's config that predates data.validation_fraction (no such key) trains on the whole
  training split, as with 0.0 (found by mutation testing: the default of the key is 0.0)."""
  c = load_config("digits_ce", "runlocal")
  full = make_dataset(c)
  del c.data["validation_fraction"]
  assert "validation_fraction" not in c.data
  ds = make_dataset(c)
  assert ds.validation is None
  assert ds.train.num_examples == full.train.num_examples
