"""SimLoss methods in the trainer: one step of each method on 4 devices equals one device, the
similarity in the buffers is the configured one, config errors are clear, the study datasets load."""

import os

import jax
import numpy as np
import pytest

from labelwise import losses
from labelwise.train import methods as methods_lib
from labelwise.train import trainer
from labelwise.train.methods.base import RunInfo
from tests.helpers import load_config, max_abs_diff

RUNS = [  # (config module, arg, method)
    ("diabetes_simloss", "runlocal", "simloss"),
    ("diabetes_label_smoothing", "runlocal", "label_smoothing"),
    ("diabetes_sord", "runlocal", "sord"),
    ("hierarchy_hierarchical_soft", "runlocal", "hierarchical_soft"),
]


def _run(module, arg, workdir, **kw):
  c = load_config(module, arg, total_steps=1, log_every=1, checkpoint_every=-1, batch_size=16,
                  **kw)
  c.optimizer.learning_rate = 0.05
  t = trainer.Trainer(c, str(workdir))
  return t, t.run()


@pytest.mark.parametrize("module,arg,method", RUNS)
def test_one_step_on_four_devices_equals_one_device(module, arg, method, tmp_path):
  one, r1 = _run(module, arg, tmp_path / "one", parallel="jit", num_devices=1)
  four, r4 = _run(module, arg, tmp_path / "four", parallel="pmap", num_devices=4)
  assert one.config.method == method
  assert r1["step"] == r4["step"] == 1 and np.isfinite(r1["train/loss"])
  assert max_abs_diff(four.host_state.params, one.host_state.params) < 1e-5
  assert r4["train/loss"] == pytest.approx(r1["train/loss"], abs=1e-5)
  # The configured evaluators ran (ordinal metrics on diabetes, superclass ones on the hierarchy).
  keys = ("eval/mae", "eval/mse", "eval/failure_severity", "eval/num_predicted_classes") \
      if module.startswith("diabetes") else ("eval/superclass_accuracy",
                                             "eval/failed_superclass_accuracy")
  for k in keys:
    assert k in r1 and r1[k] == pytest.approx(r4[k], abs=1e-6), k


def test_simloss_superclass_run_and_similarity_buffer(tmp_path):
  t, results = _run("hierarchy_simloss", "runlocal,r=0.7", tmp_path, parallel="shard_map")
  from labelwise.data.builders import hierarchy_gaussians as hg
  want = losses.superclass_similarity(np.array(hg.FINE_TO_COARSE), reduction_factor=0.7)
  np.testing.assert_allclose(np.asarray(t.host_state.buffers["similarity"]), want)
  assert 0.0 <= results["eval/superclass_accuracy"] <= 1.0
  # The first step's loss is the SimLoss of the initial model on the first batch.
  batch = t.host_batch(0)
  init = t.initial_state()
  outputs = t.model.apply({"params": init.params, **init.model_state}, batch["input"])
  want_loss = float(np.mean(losses.simloss(outputs["logits"], batch["label"], want)))
  assert results["train/loss"] == pytest.approx(want_loss, rel=1e-5)


def _info(num_classes=5, f2c=None):
  return RunInfo(num_classes=num_classes, num_fine_classes=num_classes, num_coarse_classes=None,
                 num_train_examples=10, input_shape=(3,), fine_to_coarse=f2c)


def test_similarity_from_config_and_errors(tmp_path):
  c = load_config("diabetes_simloss", "runlocal,r=0.3")
  m = methods_lib.get_method(c)
  s = m.init_buffers(jax.random.PRNGKey(0), info=_info(10))["similarity"]
  np.testing.assert_allclose(s, [[0.3 ** abs(i - j) for j in range(10)] for i in range(10)],
                             rtol=1e-6)
  # Embedding similarity from a .npy.
  emb = np.random.default_rng(0).standard_normal((10, 4))
  np.save(tmp_path / "emb.npy", emb)
  c.simloss.similarity = "embedding"
  c.simloss.embeddings = str(tmp_path / "emb.npy")
  c.simloss.lower_bound = 0.2
  s = methods_lib.get_method(c).init_buffers(None, info=_info(10))["similarity"]
  np.testing.assert_allclose(s, losses.embedding_similarity(emb, lower_bound=0.2), rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[5, dim\]"):
    methods_lib.get_method(c).init_buffers(None, info=_info(5))
  c.simloss.similarity = "superclass"
  with pytest.raises(ValueError, match="fine-to-coarse"):
    methods_lib.get_method(c).init_buffers(None, info=_info(10))
  c.simloss.similarity = "nope"
  with pytest.raises(ValueError, match="simloss.similarity"):
    methods_lib.get_method(c)
  c.simloss.similarity = "ordinal"
  c.simloss.reduction_factor = 1.0
  with pytest.raises(ValueError, match="reduction_factor"):
    methods_lib.get_method(c)
  with pytest.raises(ValueError, match="method"):
    load_config("hierarchy_simloss", "method=sord")


def test_diabetes_folds_partition_the_data():
  from labelwise.data import make_dataset
  seen = []
  for k in range(5):
    c = load_config("diabetes_simloss", f"runlocal,fold={k}")
    ds = make_dataset(c)
    train_idx = ds.train.all()["label"].shape[0]
    held = ds.split(c.data.eval_split).all()
    assert train_idx + held["label"].shape[0] == 442
    seen.append(held["input"])
  allx = np.concatenate(seen)
  assert allx.shape[0] == 442 and np.unique(allx, axis=0).shape[0] == 442


@pytest.mark.parametrize("module", ["diabetes_simloss", "diabetes_sord", "diabetes_label_smoothing",
                                    "hierarchy_simloss", "hierarchy_hierarchical_soft",
                                    "cifar100_simloss", "age_simloss"])
def test_configs_build_and_validate(module):
  from labelwise.data.registry import get_dataset_spec
  for arg in (None, "runlocal"):
    c = load_config(module, arg)
    get_dataset_spec(c.dataset)
    methods_lib.get_method(c)                       # options known and in range
    assert c.batch_size % 4 == 0 or arg is None
  c = load_config("cifar100_simloss", "model=lenet,similarity=embedding,embeddings=e.npy,b=0.3")
  assert c.model == "small_cnn" and c.simloss.similarity == "embedding"
  assert c.simloss.lower_bound == 0.3 and c.batch_size == 1024


@pytest.mark.slow  # ~20 s: a CNN on 60x60 images; the builder itself is tested in test_simloss_eval
def test_age_config_one_step_on_a_tiny_image_folder(tmp_path, monkeypatch):
  from PIL import Image
  from labelwise.data.builders import simloss_ordinal as so
  rng = np.random.default_rng(0)
  for age in (3, 40, 41, 88):
    os.makedirs(tmp_path / "faces" / str(age))
    for i in range(5):
      Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(
          tmp_path / "faces" / str(age) / f"{i}.jpg")
  monkeypatch.setenv(so.AGE_FOLDER_ENV, str(tmp_path / "faces"))
  c = load_config("age_simloss", "runlocal", total_steps=1, log_every=1)
  c.data.data_dir = str(tmp_path / "tfds")
  results = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert results["step"] == 1 and np.isfinite(results["train/loss"])
  assert results["eval/num_examples"] == 2 and 0 <= results["eval/mae"] <= 89
