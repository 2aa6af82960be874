"""Tests for labelwise.eval.saliency and the crosses dataset generator (hand-made examples)."""

import os
import re

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


# ----------------------------------------------------------------------------------------------
# saliency maps, overlap, AUC and the grid: closed forms and edge cases
# ----------------------------------------------------------------------------------------------


def _exp_apply(k):
  """logits ``z_c = sum_pixels exp(k_c x)``: ``d z_c / dx = k_c exp(k_c x)`` pixel by pixel."""
  k = jnp.asarray(k, jnp.float32)
  return lambda x: jnp.exp(x.reshape(x.shape[0], -1, 1) * k).sum(1)


def _exp_ig(x, k_y, steps):
  """Closed form of the midpoint rule for ``_exp_apply`` (zero baseline), per pixel:
  ``x/N sum_j k exp(k x (j + 1/2)/N) = (e^t - 1) u / sinh(u)``, ``t = k x``, ``u = t / (2N)``."""
  t = np.asarray(x, np.float64) * np.reshape(k_y, (-1,) + (1,) * (np.ndim(x) - 1))
  u = t / (2 * steps)
  return np.expm1(t) * u / np.sinh(u)


def test_integrated_gradients_default_steps_and_one_step():
  rng = np.random.default_rng(4)
  x = rng.uniform(0.5, 1.5, size=(4, 3, 3, 1)).astype(np.float32)
  k = np.array([4.0, 10.0])
  y = np.array([0, 1, 1, 0])
  f = _exp_apply(k)
  # the default is 32 midpoints (the closed forms for 31 and 33 differ by ~1e-3 relative at t=15)
  ig = np.asarray(S.integrated_gradients(f, x, y))
  np.testing.assert_allclose(ig, _exp_ig(x, k[y], 32), rtol=1e-4)
  assert np.max(np.abs(_exp_ig(x, k[y], 31) / _exp_ig(x, k[y], 32) - 1)) > 3e-4
  smap = np.asarray(S.integrated_gradients_saliency(f, x, y))
  np.testing.assert_allclose(smap, np.abs(_exp_ig(x, k[y], 32))[..., 0], rtol=1e-4)
  # one step is allowed: x * grad(x / 2)
  ig1 = np.asarray(S.integrated_gradients(f, x, y, steps=1))
  np.testing.assert_allclose(ig1, x * k[y][:, None, None, None] * np.exp(k[y][:, None, None, None]
                                                                         * x / 2), rtol=1e-5)
  np.testing.assert_allclose(ig1, _exp_ig(x, k[y], 1), rtol=1e-5)
  # a baseline: IG from x0 to x of a linear model is (x - x0) * W[:, y]
  W = rng.normal(size=(9, 2)).astype(np.float32)
  x0 = rng.normal(size=x.shape).astype(np.float32)
  igb = S.integrated_gradients(_linear_apply(W), x, y, steps=3, baseline=x0)
  np.testing.assert_allclose(igb, (x - x0) * W[:, y].T.reshape(x.shape), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="baseline"):
    S.integrated_gradients(f, x, y, baseline=x0[:2])
  with pytest.raises(ValueError, match="steps"):
    S.integrated_gradients(f, x, y, steps=-1)


def test_saliency_functions_take_named_arguments_and_keyword_only_options(tmp_path):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 3, 3)).astype(np.float32)
  W = rng.normal(size=(9, 2)).astype(np.float32)
  y = np.array([1, 0])
  f = _linear_apply(W)
  expect = np.abs(W[:, y].T.reshape(2, 3, 3))
  np.testing.assert_allclose(S.input_gradient_saliency(apply_fn=f, inputs=x, labels=y), expect,
                             rtol=1e-6)
  np.testing.assert_allclose(
      S.integrated_gradients_saliency(apply_fn=f, inputs=x, labels=y, steps=2),
      np.abs(x * W[:, y].T.reshape(2, 3, 3)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(S.integrated_gradients(apply_fn=f, inputs=x, labels=y, steps=2),
                             x * W[:, y].T.reshape(2, 3, 3), rtol=1e-5, atol=1e-6)
  with pytest.raises(TypeError):
    S.input_gradient_saliency(f, x, y, 1.0)            # blur_sigma is keyword-only
  with pytest.raises(TypeError):
    S.integrated_gradients_saliency(f, x, y, 4)        # steps is keyword-only
  with pytest.raises(TypeError):
    S.integrated_gradients(f, x, y, 4)
  m = np.ones((2, 3, 3))
  path = S.save_saliency_grid(path=str(tmp_path / "g.png"), images=x, masks=m,
                              saliencies={"s": expect})
  assert os.path.exists(path)
  with pytest.raises(TypeError):
    S.save_saliency_grid(str(tmp_path / "h.png"), x, m, {"s": expect}, [0, 1])  # labels by name


def test_topk_mask_refuses_counts_out_of_range_or_fractional():
  s = np.arange(18.0).reshape(2, 3, 3)
  sel = S.topk_mask(s, 9)                   # every pixel
  assert sel.all()
  assert not S.topk_mask(s, 0).any()
  for bad in (10, 2.5, -1, [3, 10], [1.5, 2]):
    with pytest.raises(ValueError, match=r"`k` must hold whole pixel counts in \[0, 9\]"):
      S.topk_mask(s, bad)
  # the message lists the first five counts
  with pytest.raises(ValueError, match=re.escape("got [-1.0, 2.0, 3.0, 4.0, 5.0].")):
    S.topk_mask(np.zeros((6, 3, 3)), [-1, 2, 3, 4, 5, 6])
  # against a brute-force ranking of distinct values: the k largest
  rng = np.random.default_rng(6)
  r = rng.permutation(40).reshape(2, 4, 5).astype(float)
  sel = S.topk_mask(r, np.array([7, 13]))
  for i, kk in enumerate((7, 13)):
    np.testing.assert_array_equal(sel[i], r[i] >= np.sort(r[i].ravel())[::-1][kk - 1])


def test_overlap_edge_cases_by_hand():
  # example 0: an empty mask (k = 0 kept pixels): every ratio is undefined, no mass inside
  # example 1: a one-pixel mask on the peak: IoU = IoP = IoT = 1
  # example 2: a two-pixel mask holding the peak and the 3rd value: the top 2 (5, 2) share one pixel
  #   with it (IoU 1/3, IoP = IoT = 1/2); with top_k = 1 below: IoP 1, IoT 1/2, IoU 1/2
  s = np.array([[[1.0, 2.0], [3.0, 4.0]],
                [[0.1, 0.9], [0.2, 0.3]],
                [[5.0, 1.0], [2.0, 0.0]]])
  m = np.array([[[0, 0], [0, 0]],
                [[0, 1], [0, 0]],
                [[1, 1], [0, 0]]])
  out = S.saliency_overlap(s, m)
  for key, want in (("iou", [1.0, 1 / 3]), ("iop", [1.0, 0.5]), ("iot", [1.0, 0.5])):
    assert np.isnan(out[key][0]), key
    np.testing.assert_allclose(out[key][1:], want, err_msg=key)
  np.testing.assert_allclose(out["mass_fraction"], [0.0, 0.9 / 1.5, 6.0 / 8.0])
  k1 = S.saliency_overlap(s, m, top_k=1)
  np.testing.assert_allclose(k1["iop"], [0.0, 1.0, 1.0])      # |S| = 1 everywhere
  np.testing.assert_allclose(k1["iot"][1:], [1.0, 0.5])
  np.testing.assert_allclose(k1["iou"], [0.0, 1.0, 0.5])      # |S u M| = 1, 1, 2
  assert np.isnan(k1["iot"][0])
  # the mass fraction does not depend on the scale of the map (totals below 1 included)
  for c in (1e-3, 0.5, 7.0):
    np.testing.assert_allclose(S.saliency_overlap(c * s, m)["mass_fraction"],
                               out["mass_fraction"], rtol=1e-12)


def test_multiclass_auc_against_sklearn():
  from scipy.special import softmax
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(7)
  z = rng.normal(size=(30, 3)) * 2
  y = rng.integers(0, 3, 30)
  want = roc_auc_score(y, softmax(z, axis=-1), multi_class="ovr", average="macro")
  assert S.multiclass_auc(z, y) == pytest.approx(want)
  # large logits: the softmax must stay finite
  big = z + 800.0
  assert S.multiclass_auc(big, y) == pytest.approx(want)
  z2 = z[:, :2] * 3 + 900.0
  y2 = y % 2
  assert S.multiclass_auc(z2, y2) == pytest.approx(roc_auc_score(y2, softmax(z2, -1)[:, 1]))
  # a class without examples is left out of the macro mean
  yy = y % 2
  want2 = np.mean([roc_auc_score(yy == c, softmax(z, -1)[:, c]) for c in (0, 1)])
  assert S.multiclass_auc(z, yy) == pytest.approx(want2)
  # two examples of three classes: the macro mean over the classes present (not the binary path)
  z3 = np.array([[0.0, 1.0, -5.0], [0.0, 1.0, 5.0]])
  p3 = softmax(z3, -1)
  want3 = np.mean([roc_auc_score([1, 0], p3[:, 0]), roc_auc_score([0, 1], p3[:, 1])])
  assert want3 == pytest.approx(0.5)
  assert S.multiclass_auc(z3, np.array([0, 1])) == pytest.approx(want3)
  # one class: AUC undefined
  assert np.isnan(S.multiclass_auc(np.zeros((5, 1)), np.zeros(5, int)))
  for bad in (np.zeros(6), np.zeros((3, 2, 2))):
    with pytest.raises(ValueError, match="`logits` must be"):
      S.multiclass_auc(bad, np.zeros(len(bad), int))


def _grid_figure(monkeypatch, *args, **kwargs):
  """Calls save_saliency_grid and returns (path, the matplotlib figure it saved)."""
  import matplotlib.figure
  seen = []
  save = matplotlib.figure.Figure.savefig

  def spy(fig, *a, **kw):
    seen.append(fig)
    return save(fig, *a, **kw)
  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
  path = S.save_saliency_grid(*args, **kwargs)
  monkeypatch.undo()
  assert len(seen) == 1
  return path, seen[0]


def _drawn(ax):
  """The data of the one image drawn on ``ax``, masked (invalid) entries as nan."""
  assert len(ax.images) == 1
  return np.ma.filled(np.ma.asarray(ax.images[0].get_array()).astype(np.float64), np.nan)


def _contour_sets(ax):
  import matplotlib.contour
  return [c for c in ax.collections if isinstance(c, matplotlib.contour.ContourSet)]


def _contour_segments(ax):
  sets = _contour_sets(ax)
  segs = [seg for cs in sets for level in cs.allsegs for seg in level]
  return np.concatenate(segs) if segs else np.zeros((0, 2))


def test_save_saliency_grid_panels(tmp_path, monkeypatch):
  from PIL import Image
  rng = np.random.default_rng(8)
  x = rng.uniform(0.2, 0.6, size=(3, 6, 6, 3)).astype(np.float32)
  x[1] = 0.3                                      # a constant RGB image is drawn black
  m = np.zeros((3, 6, 6), np.uint8)
  m[:, :, :3] = 1                                 # left half: contour x = 2.5
  maps = {"a": rng.random((3, 6, 6)), "b": rng.random((3, 6, 6))}
  path, fig = _grid_figure(monkeypatch, str(tmp_path / "grid.png"), x, m[..., None], maps,
                           labels=[4, 7, 9], max_examples=2)
  n, cols = 2, 4
  with Image.open(path) as im:
    assert im.size == (160 * cols, 160 * n)       # 1.6 in per panel at 100 dpi
  axes = np.array(fig.axes).reshape(n, cols)
  titles = ["image", "mask", "a", "b"]
  for i in range(n):
    lo, hi = x[i].min(), x[i].max()
    want_img = (x[i] - lo) / (hi - lo) if hi > lo else np.zeros_like(x[i])
    np.testing.assert_allclose(_drawn(axes[i, 0]), want_img, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(_drawn(axes[i, 1]), m[i])
    for j, name in ((2, "a"), (3, "b")):
      np.testing.assert_allclose(_drawn(axes[i, j]), maps[name][i])
      pts = _contour_segments(axes[i, j])   # the mask's edge, between columns 2 and 3
      np.testing.assert_allclose(pts[:, 0], 2.5)
      assert len(pts) and pts[:, 1].min() == 0 and pts[:, 1].max() == 5
      assert all(np.all(np.asarray(cs.get_linewidths()) > 0) for cs in _contour_sets(axes[i, j]))
    for j in range(cols):
      assert axes[i, j].get_title() == (titles[j] if i == 0 else "")
      assert axes[i, j].get_ylabel() == (f"y={[4, 7][i]}" if j == 0 else "")
    assert not len(_contour_segments(axes[i, 0])) and not len(_contour_segments(axes[i, 1]))
  assert np.ptp(want_img) == 0                    # row 1 was the constant image
  # one-channel images are drawn as they are (grey scale of the raw values)
  g = rng.uniform(0.2, 0.6, size=(2, 5, 4, 1)).astype(np.float32)
  _, fig1 = _grid_figure(monkeypatch, str(tmp_path / "g1.png"), g, np.ones((2, 5, 4)), {})
  axes1 = np.array(fig1.axes).reshape(2, 2)
  for i in range(2):
    np.testing.assert_array_equal(_drawn(axes1[i, 0]), g[i, ..., 0])
  # a thin RGB image (height or width 1) is still drawn in colour, stretched to [0, 1]
  for shape in ((1, 1, 5, 3), (1, 5, 1, 3)):
    t = rng.uniform(0.2, 0.6, size=shape).astype(np.float32)
    _, fig2 = _grid_figure(monkeypatch, str(tmp_path / "t.png"), t, np.ones(shape[:3]), {})
    np.testing.assert_allclose(_drawn(fig2.axes[0]),
                               (t[0] - t.min()) / (t.max() - t.min()), rtol=1e-6, atol=1e-7)


def test_chunked_concatenates_in_order():
  fn = lambda a, b: a * 2 + b
  for n in (0, 1, 128, 130):
    a, b = np.arange(n, dtype=float), np.ones(n)
    out = S._chunked(fn, (a, b))
    assert out.shape == (n,)
    np.testing.assert_array_equal(out, 2 * a + 1)


# ----------------------------------------------------------------------------------------------
# the attribution evaluator's defaults (256 examples, 32 IG steps, 8 pictured) and model state
# ----------------------------------------------------------------------------------------------


class _ExpModel:
  """``_exp_apply`` as a model: ``k`` lives in the model state, a scale in the params."""

  def apply(self, variables, x, train=False):
    k = variables["consts"]["k"] * variables["params"]["scale"]
    return {"logits": jnp.exp(x.reshape(x.shape[0], -1, 1) * k).sum(1)}


class _UnhashableExpModel(_ExpModel):
  __hash__ = None


def _attribution_ctx(model, n, tmp_path, opts):
  from tests.helpers import fake_eval_context
  rng = np.random.RandomState(9)
  k = np.array([4.0, 10.0], np.float32)
  splits = {}
  for name in ("train", "test", "test_shift"):
    x = rng.uniform(0.5, 1.5, size=(n, 3, 3, 1)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int32)
    # mask = the 3 brightest pixels (the maps grow with x), except example 255: the 3 dimmest
    order = np.argsort(-x.reshape(n, -1), axis=1)
    m = np.zeros((n, 9), np.float32)
    np.put_along_axis(m, order[:, :3], 1.0, axis=1)
    if n > 255:
      m[255] = 0.0
      m[255, order[255, -3:]] = 1.0
    splits[name] = {"input": x, "label": y, "mask": m.reshape(n, 3, 3)}
  params, state = {"scale": np.float32(1.0)}, {"consts": {"k": k}}

  def predictions(split):
    z = np.asarray(model.apply({"params": params, **state}, splits[split]["input"])["logits"])
    return {"logits": z, "label": splits[split]["label"]}

  class _Obj:
    def __init__(self, **kw):
      self.__dict__.update(kw)
  ctx = fake_eval_context({}, config={"attribution_eval": opts})
  ctx.predict_fn, ctx.params, ctx.model, ctx.model_state, ctx.workdir = (
      predictions, params, model, state, str(tmp_path))
  ctx.dataset = _Obj(spec=_Obj(splits=("train", "test", "test_shift")),
                     split=lambda name: _Obj(all=lambda: splits[name]))
  return ctx, splits["test_shift"], k


def test_attribution_evaluator_defaults_against_closed_forms(tmp_path):
  from labelwise.eval import evaluators
  n = 260
  ctx, data, k = _attribution_ctx(_ExpModel(), n, tmp_path, {"save_png": False})
  out = evaluators.get_evaluator("attribution")(ctx)
  x, m, y = data["input"], data["mask"], data["label"]
  grad = k[y][:, None, None] * np.exp(k[y][:, None, None] * x[..., 0])
  ig = np.abs(_exp_ig(x, k[y], 32))[..., 0]
  # the first 256 examples: every top-3 is the mask but example 255's (IoU 0)
  for kind, smap in (("grad", grad), ("ig", ig)):
    assert out[f"saliency/{kind}_iou"] == pytest.approx(255 / 256), kind
    assert out[f"saliency/{kind}_iop"] == pytest.approx(255 / 256), kind
    assert out[f"saliency/{kind}_iot"] == pytest.approx(255 / 256), kind
    mass = (smap * m).reshape(n, -1).sum(1) / smap.reshape(n, -1).sum(1)
    assert out[f"saliency/{kind}_mass"] == pytest.approx(mass[:256].mean(), rel=1e-5), kind
  saved = np.load(tmp_path / "saliency_test_shift.npz")
  assert saved["input"].shape == (8, 3, 3, 1)
  np.testing.assert_array_equal(saved["input"], x[:8])
  np.testing.assert_array_equal(saved["mask"], m[:8])
  np.testing.assert_array_equal(saved["label"], y[:8])
  np.testing.assert_allclose(saved["grad"], grad[:8], rtol=1e-5)
  np.testing.assert_allclose(saved["ig"], ig[:8], rtol=1e-4)     # 32 IG steps by default
  assert not os.path.exists(tmp_path / "saliency_test_shift.png")


def test_attribution_evaluator_with_an_unhashable_model(tmp_path):
  from labelwise.eval import evaluators
  with pytest.raises(TypeError):
    hash(_UnhashableExpModel())
  ctx, data, k = _attribution_ctx(_UnhashableExpModel(), 6, tmp_path,
                                  {"save_png": False, "ig_steps": 3})
  out = evaluators.get_evaluator("attribution")(ctx)
  x, y = data["input"], data["label"]
  saved = np.load(tmp_path / "saliency_test_shift.npz")
  np.testing.assert_allclose(saved["grad"], k[y][:, None, None] * np.exp(
      k[y][:, None, None] * x[..., 0]), rtol=1e-5)
  np.testing.assert_allclose(saved["ig"], np.abs(_exp_ig(x, k[y], 3))[..., 0], rtol=1e-4)
  assert out["saliency/grad_iou"] == pytest.approx(1.0)


def test_attribution_evaluator_refuses_max_examples_below_one_and_an_empty_split(tmp_path):
  """max_examples = 0 (or an empty saliency split) used to fail in ``saliency_overlap`` with a
  shape error about ``masks`` (``_chunked`` of no examples is a 1-D empty array); a negative count
  silently dropped the last examples (``x[:-1]``). Both now fail first, naming the option."""
  from labelwise.eval import evaluators
  ev = evaluators.get_evaluator("attribution")
  for bad in (0, -1, 2.5, True, "8"):
    ctx, _, _ = _attribution_ctx(_ExpModel(), 6, tmp_path, {"save_png": False,
                                                            "max_examples": bad})
    with pytest.raises(ValueError, match=r"`config\.attribution_eval\.max_examples` must be a "
                                         r"positive integer.*got " + re.escape(repr(bad))):
      ev(ctx)
  ctx, _, _ = _attribution_ctx(_ExpModel(), 6, tmp_path, {"save_png": False, "split": "train"})
  full = ctx.dataset.split
  empty = {key: v[:0] for key, v in full("train").all().items()}

  class _Empty:
    all = staticmethod(lambda: empty)
  ctx.dataset.split = lambda name: _Empty() if name == "train" else full(name)
  with pytest.raises(ValueError, match=r"saliency split 'train' \(`config\.attribution_eval\.split`"
                                       r".*has no examples"):
    ev(ctx)
  # the boundary, max_examples = 1 (a numpy integer too): only the first example is scored
  ctx, data, k = _attribution_ctx(_ExpModel(), 6, tmp_path, {"save_png": False, "ig_steps": 3,
                                                             "max_examples": np.int64(1)})
  x, m, y = data["input"][:1], data["mask"][:1], data["label"][:1]
  out = ev(ctx)
  grad = k[y][:, None, None] * np.exp(k[y][:, None, None] * x[..., 0])
  mass = (grad * m).sum() / grad.sum()
  assert out["saliency/grad_mass"] == pytest.approx(mass, rel=1e-5)
  saved = np.load(tmp_path / "saliency_test_shift.npz")
  assert saved["input"].shape == (1, 3, 3, 1)
  np.testing.assert_allclose(saved["grad"], grad, rtol=1e-5)
