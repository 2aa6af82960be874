"""Tests for labelwise.eval.saliency and the crosses dataset generator (hand-made examples)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.eval import saliency as S


def test_overlap_hand_example():
  # 1x3x3 map; mask = the top row (3 pixels); top-3 salient = two of the top row + the centre
  s = np.array([[[9.0, 8.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 0.0]]])
  m = np.array([[[1, 1, 1], [0, 0, 0], [0, 0, 0]]])
  out = S.saliency_overlap(s, m)
  np.testing.assert_allclose(out["iou"], [2 / 4])
  np.testing.assert_allclose(out["iop"], [2 / 3])
  np.testing.assert_allclose(out["iot"], [2 / 3])
  np.testing.assert_allclose(out["mass_fraction"], [17 / 24])
  # a fixed k = 2 keeps the two largest (both inside): IoP 1, IoT 2/3, IoU 2/3
  out2 = S.saliency_overlap(s, m[..., None], top_k=2)
  np.testing.assert_allclose(out2["iop"], [1.0])
  np.testing.assert_allclose(out2["iot"], [2 / 3])
  np.testing.assert_allclose(out2["iou"], [2 / 3])
  # a perfect map and an all-zero map
  perfect = S.saliency_overlap(m.astype(float), m)
  for key in ("iou", "iop", "iot", "mass_fraction"):
    np.testing.assert_allclose(perfect[key], [1.0])
  np.testing.assert_allclose(S.saliency_overlap(np.zeros((1, 3, 3)), m)["mass_fraction"], [0.0])
  with pytest.raises(ValueError, match="masks"):
    S.saliency_overlap(s, np.ones((1, 3, 4)))


def test_topk_mask_counts_and_ties():
  s = np.array([[[1.0, 1.0], [1.0, 0.0]], [[0.0, 3.0], [2.0, 1.0]]])
  sel = S.topk_mask(s, np.array([2, 3]))
  np.testing.assert_array_equal(sel.reshape(2, -1).sum(1), [2, 3])
  np.testing.assert_array_equal(sel[0], [[True, True], [False, False]])  # ties: pixel order
  np.testing.assert_array_equal(sel[1], [[False, True], [True, True]])


def test_roc_auc_against_pair_counting():
  assert S.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
  assert S.roc_auc([1, 2, 3], [1, 0, 0]) == pytest.approx(0.0)
  assert S.roc_auc([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.5)  # ties count 1/2
  assert np.isnan(S.roc_auc([1, 2], [1, 1]))
  rng = np.random.default_rng(0)
  s = np.round(rng.normal(size=60), 1)  # many ties
  y = rng.random(60) < 0.4
  pos, neg = s[y], s[~y]
  brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
      len(pos) * len(neg))
  assert S.roc_auc(s, y) == pytest.approx(brute)
  z = np.stack([np.zeros(60), s], -1)  # p(class 1) is monotone in s
  assert S.multiclass_auc(z, y.astype(int)) == pytest.approx(brute)


def _linear_apply(W):
  return lambda x: x.reshape(x.shape[0], -1) @ W


def test_input_gradient_saliency_and_blur():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
  W = rng.normal(size=(24, 3)).astype(np.float32)
  y = np.array([2, 0])
  s = S.input_gradient_saliency(_linear_apply(W), x, y)
  expect = np.abs(W[:, y].T.reshape(2, 3, 4, 2)).sum(-1)  # d z_y / dx = W[:, y]
  np.testing.assert_allclose(s, expect, rtol=1e-6)
  # blur keeps the total mass away from the border and spreads a delta as a normalized Gaussian
  d = np.zeros((1, 11, 11), np.float32)
  d[0, 5, 5] = 1.0
  b = np.asarray(S.gaussian_blur(d, 1.0))
  assert b.sum() == pytest.approx(1.0, rel=1e-5)
  g1 = np.exp(-0.5 * np.arange(-3, 4) ** 2)
  g1 /= g1.sum()
  np.testing.assert_allclose(b[0, 2:9, 2:9], np.outer(g1, g1), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(S.gaussian_blur(d, 0.0), d)


def test_integrated_gradients_linear_and_completeness():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
  W = rng.normal(size=(16, 2)).astype(np.float32)
  y = np.array([0, 1, 1])
  ig = S.integrated_gradients(_linear_apply(W), x, y, steps=4)
  np.testing.assert_allclose(ig, x * W[:, y].T.reshape(3, 4, 4, 1), rtol=1e-5, atol=1e-6)
  # a non-linear model: completeness sum IG = z_y(x) - z_y(0) (midpoint rule, many steps)
  W1 = rng.normal(size=(16, 8)).astype(np.float32) * 0.5
  W2 = rng.normal(size=(8, 2)).astype(np.float32)
  f = lambda v: jnp.tanh(v.reshape(v.shape[0], -1) @ W1) @ W2
  ig2 = S.integrated_gradients(f, x, y, steps=64)
  z = np.asarray(f(x))[np.arange(3), y] - np.asarray(f(np.zeros_like(x)))[np.arange(3), y]
  np.testing.assert_allclose(np.asarray(ig2).reshape(3, -1).sum(1), z, rtol=1e-3, atol=1e-3)
  smap = S.integrated_gradients_saliency(f, x, y, steps=8)
  assert smap.shape == (3, 4, 4) and np.all(np.asarray(smap) >= 0)
  with pytest.raises(ValueError, match="steps"):
    S.integrated_gradients(f, x, y, steps=0)


def test_save_saliency_grid(tmp_path):
  rng = np.random.default_rng(3)
  x = rng.random((3, 6, 6, 1)).astype(np.float32)
  m = (rng.random((3, 6, 6)) > 0.5).astype(np.uint8)
  path = S.save_saliency_grid(str(tmp_path / "sub" / "grid.png"), x, m,
                              {"gradient": rng.random((3, 6, 6))}, labels=[0, 1, 0])
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 1000


# ----------------------------------------------------------------------------------------------
# crosses dataset generator
# ----------------------------------------------------------------------------------------------


def test_crosses_generator_distractor_and_shift():
  from labelwise.data.builders import crosses as C
  x, m, y = C.generate_crosses(40, 7)
  assert x.shape == (40, 28, 28, 1) and m.shape == (40, 28, 28) and set(y) == {0, 1}
  assert abs(int(y.sum()) - 20) == 0  # balanced
  r0, r1 = C.BLOCK_ROWS
  left = x[:, r0:r1, 2:5, 0].min(axis=(1, 2)) == 1.0
  right = x[:, r0:r1, 23:26, 0].min(axis=(1, 2)) == 1.0
  np.testing.assert_array_equal(left, y == 0)     # training: block bottom-left for class 0
  np.testing.assert_array_equal(right, y == 1)    # and bottom-right for class 1
  assert not m[:, r0:r1].any()                    # the block is always outside the mask
  # masks are binary and contain every bright cross pixel above the block rows
  assert set(np.unique(m)) <= {0, 1}
  bright = x[:, :r0, :, 0] == 1.0
  assert np.all(m[:, :r0][bright] == 1)
  # the shifted split flips every image: the block moves to the other side
  xs, ms, ys = C.generate_crosses(40, 7, shift=True)
  np.testing.assert_array_equal(ys, y)
  np.testing.assert_array_equal(xs, x[:, :, ::-1])
  np.testing.assert_array_equal(ms, m[:, :, ::-1])
  right_s = xs[:, r0:r1, 23:26, 0].min(axis=(1, 2)) == 1.0
  np.testing.assert_array_equal(right_s, y == 0)
  # no distractor: nothing bright below the crosses
  xn, _, _ = C.generate_crosses(10, 7, distractor=False)
  assert xn[:, r0:r1, :, 0].max() < 0.5
  # deterministic per seed, different across seeds
  np.testing.assert_array_equal(C.generate_crosses(5, 3)[0], C.generate_crosses(5, 3)[0])
  assert not np.array_equal(C.generate_crosses(5, 3)[0], C.generate_crosses(5, 4)[0])
  # class 1 has two crosses: more bright pixels than class 0 on average
  nb = (x[:, :r0, :, 0] == 1.0).reshape(40, -1).sum(1)
  assert nb[y == 1].mean() > 1.5 * nb[y == 0].mean()


# ----------------------------------------------------------------------------------------------
# masked image folder
# ----------------------------------------------------------------------------------------------


def _write_folder(root, n_per_class=3, size=10):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for cls in ("cat", "dog"):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n_per_class):
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"im{i}.png")
        if i != 1:  # im1 has no mask file
          m = np.zeros((size, size), np.uint8)
          m[: size // 2] = 255  # top half is the region of interest
          Image.fromarray(m).save(d / f"im{i}_mask.png")


def test_masked_folder_reader(tmp_path):
  from labelwise.data.builders import masked_folder as MF
  _write_folder(tmp_path)
  splits, classes = MF.folder_layout(str(tmp_path))
  assert splits == ["test", "train"] and classes == ["cat", "dog"]
  x, m, y, names = MF.read_masked_folder(str(tmp_path), "train", classes, size=10)
  assert x.shape == (6, 10, 10, 3) and m.shape == (6, 10, 10) and x.dtype == np.float32
  assert 0.0 <= x.min() and x.max() <= 1.0
  np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])
  assert names[1] == os.path.join("train", "cat", "im1.png")
  np.testing.assert_array_equal(m[1], 1)            # no mask file: all ones (no mask)
  np.testing.assert_array_equal(m[0, :5], 1)        # top half inside
  np.testing.assert_array_equal(m[0, 5:], 0)
  # pixel values survive (same size: no resampling)
  from PIL import Image
  raw = np.asarray(Image.open(tmp_path / "train" / "dog" / "im2.png"), np.float32) / 255.0
  np.testing.assert_allclose(x[5], raw, atol=1e-6)
  with pytest.raises(ValueError, match="train"):
    MF.folder_layout(str(tmp_path / "train"))
