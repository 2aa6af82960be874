"""Collision methods through the trainer: one end-to-end step per method, dataset-level
pseudo-labels, the zero-head deadlock check, and the synthetic soft-target noise models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.train import trainer as trainer_lib
from labelwise.train.methods.collision import noisy_soft_targets
from labelwise.train.writers import read_metrics
from tests.helpers import load_config

_SHORT = dict(total_steps=1, log_every=1, checkpoint_every=-1)


@pytest.mark.parametrize("module,arg", [
    ("digits_collision_soft", "runlocal"),
    ("digits_collision_soft", "runlocal,method=shannon_soft,targets=flat,level=0.5"),
    ("digits_cluster", "runlocal"),
    ("digits_cluster", "runlocal,method=shannon_cluster"),
    ("digits_cluster", "runlocal,method=mi_cluster"),
])
def test_one_step_end_to_end(module, arg, tmp_path):
  config = load_config(module, arg, **_SHORT)
  results = trainer_lib.train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 1 and np.isfinite(results["train/loss"])
  logged = read_metrics(str(tmp_path))
  train = [m for m in logged if "train/loss" in m][0]
  if "cluster" in module:
    assert 0.0 < results["eval/cluster_accuracy"] <= 1.0
    assert results["eval/num_examples"] == 1797  # clustering scores train+test
    assert -1.0 <= results["eval/ari"] <= 1.0 and 0.0 <= results["eval/nmi"] <= 1.0
    assert train["train/prediction_spread"] > 0
    if "mi_cluster" not in arg:
      assert train["train/em_iterations"] >= 1
      assert np.isfinite(train["train/self_labeling_objective"])
  else:
    assert 0.0 <= results["eval/accuracy"] <= 1.0
    assert 0.0 <= train["train/target_label_agreement"] <= 1.0


def test_dataset_level_pseudo_labels(tmp_path):
  config = load_config("digits_cluster", "runlocal,pseudo=dataset,update_every=1",
                       total_steps=2, log_every=1, checkpoint_every=-1)
  trainer = trainer_lib.Trainer(config, str(tmp_path))
  state = trainer.initial_state()
  assert state.buffers["pseudo_labels"].shape == (1797, 10)
  assert [s for s in range(5) if trainer.method.needs_host_update(s)] == list(range(5))
  buffers = trainer.method.host_update(trainer.host_context(0, trainer.parallel.put_state(state)))
  y = np.asarray(buffers["pseudo_labels"])
  np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
  assert float(buffers["em_iterations"]) >= 1
  assert np.abs(y - 0.1).max() > 0.01  # no longer the uniform initial table
  # Row i of the table is the EM solution for example i: recompute it from the predictions.
  from labelwise import losses
  preds = trainer.predictions(trainer.dataset.train.split, state)
  probs = jax.nn.softmax(jnp.asarray(preds["logits"]), -1)
  o = trainer.method.options
  y_ref, _ = losses.collision_pseudo_labels(probs, fairness_weight=o["fairness_weight"],
                                            fairness=o["fairness"], tol=o["tol"],
                                            max_iter=o["max_iter"])
  np.testing.assert_allclose(y[preds["index"]], y_ref, atol=1e-5)
  results = trainer.run()
  logged = [m for m in read_metrics(str(tmp_path)) if "train/loss" in m]
  assert all(m["train/em_iterations"] >= 1 for m in logged)
  assert np.isfinite(results["eval/cluster_accuracy"])


def _zero_head(params):
  def visit(path, x):
    names = [str(getattr(p, "key", p)) for p in path]
    return np.zeros_like(x) if "head" in names else x
  return jax.tree_util.tree_map_with_path(visit, params)


@pytest.mark.parametrize("method", ["collision_cluster", "mi_cluster"])
def test_zero_initialized_head_deadlock_is_detected(method, tmp_path):
  config = load_config("digits_cluster", f"runlocal,method={method}", **_SHORT)
  trainer = trainer_lib.Trainer(config, str(tmp_path))
  state = trainer.initial_state()
  assert [s for s in range(5) if trainer.method.needs_host_update(s)] == [0]  # before step 0 only
  trainer.method.host_update(trainer.host_context(0, trainer.parallel.put_state(state)))  # fine
  dead = state.replace(params=_zero_head(state.params))
  with pytest.raises(ValueError, match="deadlock"):
    trainer.method.host_update(trainer.host_context(0, trainer.parallel.put_state(dead)))


def test_noisy_soft_targets():
  targets = jax.jit(noisy_soft_targets, static_argnames=("num_classes", "noise", "level", "seed"))
  labels = jnp.asarray(np.arange(4000) % 10)
  index = jnp.arange(4000)
  onehot = np.eye(10)[np.asarray(labels)]
  mix = np.asarray(targets(labels, index, num_classes=10, noise="mix", level=0.8,
                                      seed=3))
  np.testing.assert_allclose(mix.sum(1), 1.0, atol=1e-5)
  # E[(1 - eta) e_y + eta Dir(1)] = (1 - eta) e_y + eta / K.
  np.testing.assert_allclose(mix[labels == 0].mean(0), 0.2 * np.eye(10)[0] + 0.08, atol=0.01)
  flat = np.asarray(targets(labels, index, num_classes=10, noise="flat", level=0.5,
                                       seed=3))
  replaced = np.abs(flat - onehot).max(1) > 1e-6
  assert abs(replaced.mean() - 0.5) < 0.03
  # Deterministic per example index, whatever the batch it appears in.
  perm = np.random.default_rng(0).permutation(4000)[:64]
  again = targets(labels[perm], index[perm], num_classes=10, noise="mix", level=0.8,
                             seed=3)
  np.testing.assert_allclose(again, mix[perm], atol=1e-6)
  np.testing.assert_allclose(
      noisy_soft_targets(labels, index, num_classes=10, noise="mix", level=0.0, seed=3), onehot)
  with pytest.raises(ValueError, match="level"):
    noisy_soft_targets(labels, index, num_classes=10, noise="mix", level=1.5, seed=0)
  with pytest.raises(ValueError, match="noise"):
    noisy_soft_targets(labels, index, num_classes=10, noise="gauss", level=0.5, seed=0)


def test_method_option_errors(tmp_path):
  from labelwise.train.methods import get_method
  for arg, match in [("runlocal,lam=-1", "fairness_weight"),
                     ("runlocal,pseudo=epoch", "pseudo_labels"),
                     ("runlocal,method=shannon_cluster,fairness=classic", "shannon_cluster")]:
    with pytest.raises(ValueError, match=match):
      get_method(load_config("digits_cluster", arg))
  with pytest.raises(ValueError, match="targets"):
    get_method(load_config("digits_collision_soft", "runlocal,targets=human"))


def test_four_devices_equal_one_device(tmp_path):
  """The per-batch EM psums over the data axis: 4-device pmap == 1-device jit on the same batch."""
  out = {}
  for name, overrides in (("pmap4", dict(parallel="pmap")),
                          ("jit1", dict(parallel="jit", num_devices=1))):
    config = load_config("digits_cluster", "runlocal", total_steps=2, log_every=1,
                         checkpoint_every=-1, **overrides)
    trainer_lib.train_and_evaluate(config, str(tmp_path / name))
    out[name] = [m for m in read_metrics(str(tmp_path / name)) if "train/loss" in m]
  for a, b in zip(out["pmap4"], out["jit1"]):
    assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
    assert abs(a["train/em_iterations"] - b["train/em_iterations"]) <= 1
    assert a["train/self_labeling_objective"] == pytest.approx(
        b["train/self_labeling_objective"], rel=1e-4)
