"""Average-K datasets and configs: ambiguous Gaussians, the Pl@ntNet image-folder builder, CIFAR-10H
label sampling."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.data.builders import ambiguous_gaussians as ag
from labelwise.data.builders import plantnet
from labelwise.train.methods import get_method
from labelwise.train.methods.average_k import sample_labels
from tests.helpers import load_config


def test_gaussians_geometry_priors_and_posterior():
  m = ag.class_means()
  d = np.linalg.norm(m[:, None] - m[None], axis=-1)
  groups = np.arange(12) // 3
  same = (groups[:, None] == groups[None]) & ~np.eye(12, dtype=bool)
  np.testing.assert_allclose(d[same], 0.7, atol=1e-9)
  assert d[groups[:, None] != groups[None]].min() > 3.9
  pi = ag.class_priors()
  np.testing.assert_allclose(pi / pi[0], np.arange(1, 13) ** -1.2)
  # Posterior against a direct Bayes-rule computation with Gaussian densities.
  x, y, eta = ag.generate(500, 7)
  dens = np.exp(-0.5 * ((x[:, None, :].astype(np.float64) - m[None]) ** 2).sum(-1))
  bayes = pi * dens / (pi * dens).sum(-1, keepdims=True)
  np.testing.assert_allclose(eta, bayes, atol=1e-6)
  # Deterministic per seed, and the labels follow the posterior on average (calibration).
  x2, y2, _ = ag.generate(500, 7)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  x, y, eta = ag.generate(20000, 1)
  np.testing.assert_allclose(np.bincount(y, minlength=12) / len(y), eta.mean(0), atol=0.01)


def test_sample_labels_deterministic_and_distributed():
  probs = jnp.asarray(np.eye(4)[[2, 0, 3, 1]], jnp.float32)
  np.testing.assert_array_equal(sample_labels(jnp.arange(4), probs, 0), [2, 0, 3, 1])
  p = jnp.tile(jnp.array([[0.7, 0.2, 0.1]]), (3000, 1))
  idx = jnp.arange(3000)
  a = np.asarray(sample_labels(idx, p, 3))
  np.testing.assert_array_equal(a, sample_labels(idx, p, 3))  # same (seed, index) -> same label
  np.testing.assert_array_equal(a[100:200], sample_labels(idx[100:200], p[100:200], 3))
  np.testing.assert_allclose(np.bincount(a, minlength=3) / 3000, [0.7, 0.2, 0.1], atol=0.025)
  assert not np.array_equal(a, sample_labels(idx, p, 4))


@pytest.mark.parametrize("module, variants", [
    ("cifar10h_avgk", ["two_head", "two_head_a", "softmax", "assume_negative", "epr"]),
    ("plantnet_avgk", ["two_head", "two_head_a", "ce", "assume_negative", "epr"]),
    ("gaussians_avgk", ["two_head", "two_head_a", "oracle", "ce", "assume_negative", "epr"])])
def test_paper_configs_build(module, variants):
  from labelwise.train import trainer
  for v in variants:
    for arg in (f"method={v}", f"method={v},runlocal"):
      c = load_config(module, arg)
      trainer.validate_config(c)
      method = get_method(c)
      assert "average_k" in tuple(c.evaluators)
      if module == "cifar10h_avgk":
        assert method.options["sampled_labels_from"] == "soft_label"
  with pytest.raises(ValueError, match="method"):
    load_config(module, "method=nope")


def _fake_plantnet(root, classes=("1355868", "1355920", "1356022"), per_split=(4, 2, 3)):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, n in zip(("train", "val", "test"), per_split):
    for c in classes:
      d = os.path.join(root, "plantnet_300K", "images", split, c)
      os.makedirs(d)
      for i in range(n):
        arr = rng.integers(0, 256, size=(40 + 10 * i, 50, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(d, f"{c}_{i}.jpg"))


def test_plantnet_image_folder_builder(tmp_path):
  _fake_plantnet(str(tmp_path / "downloads" / "manual"))
  b = plantnet.Plantnet300k(data_dir=str(tmp_path), file_format="array_record")
  b.download_and_prepare()
  counts = {}
  for split in ("train", "validation", "test"):
    src = b.as_data_source(split=split)
    labels = [src[i]["label"] for i in range(len(src))]
    counts[split] = np.bincount(labels, minlength=3).tolist()
    assert src[0]["image"].shape == (64, 64, 3) and src[0]["image"].dtype == np.uint8
  assert counts == {"train": [4, 4, 4], "validation": [2, 2, 2], "test": [3, 3, 3]}


def test_plantnet_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="images"):
    plantnet.find_images_root(str(tmp_path))
  os.makedirs(tmp_path / "images" / "train" / "a")
  os.makedirs(tmp_path / "images" / "test" / "b")
  root = plantnet.find_images_root(str(tmp_path))
  with pytest.raises(ValueError, match="not a class of train"):
    plantnet.list_split(root, "test", ["a"])


@pytest.mark.slow
def test_plantnet_runlocal_end_to_end(tmp_path):
  from labelwise.train import trainer
  _fake_plantnet(str(tmp_path / "data" / "downloads" / "manual"))
  c = load_config("plantnet_avgk", "runlocal", total_steps=2, checkpoint_every=-1,
                  data__data_dir=str(tmp_path / "data"))
  results = trainer.train_and_evaluate(c, str(tmp_path / "run"))
  assert np.isfinite(results["train/loss"])
  assert results["eval/avgk/multilabel/K2/cal_set_size"] == pytest.approx(2.0, abs=0.2)
