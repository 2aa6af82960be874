"""Tests for labelwise.losses.average_k against independent numpy computations."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from labelwise.losses import average_k as ak
from labelwise.losses.classification import softmax_cross_entropy

# ------------------------------------------------------------------------------------------------
# independent numpy re-implementations
# ------------------------------------------------------------------------------------------------


def np_round(x):
  return int(math.floor(x + 0.5))


def np_pseudo_labels(probs, labels, k, include_true=True):
  """Sorts (value desc, flat index asc) candidates with Python's sort; no top_k involved."""
  probs = np.asarray(probs, np.float32)
  b, c = probs.shape
  out = np.zeros((b, c), np.float32)
  cands = []
  for i in range(b):
    for j in range(c):
      if include_true and j == labels[i]:
        continue
      cands.append((-float(probs[i, j]), i * c + j))
  cands.sort()
  n = np_round((k - 1) * b) if include_true else np_round(k * b)
  for _, flat in cands[:n]:
    out[flat // c, flat % c] = 1.0
  if include_true:
    out[np.arange(b), labels] = 1.0
  return out


def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_bce(z, t):
  z = np.asarray(z, np.float64)
  # -t log s(z) - (1 - t) log(1 - s(z)), written with log1p(exp) in float64.
  log_s = -np.logaddexp(0.0, -z)
  log_1ms = -np.logaddexp(0.0, z)
  return -(t * log_s + (1 - t) * log_1ms)


def np_two_head(zs, zm, labels, k, weight, include_true=True):
  logp = np_log_softmax(zs)
  ce = -logp[np.arange(len(labels)), labels]
  pl = np_pseudo_labels(np.exp(logp), labels, k, include_true)
  return ce + weight * np_bce(zm, pl).mean(-1)


def np_epr(zm, k, where=None):
  s = 1.0 / (1.0 + np.exp(-np.asarray(zm, np.float64)))
  rows = s.sum(-1)
  if where is not None:
    rows = rows[np.asarray(where, bool)]
  return (rows.mean() - k) ** 2 / zm.shape[1] ** 2


def rand_probs(seed, b, c, ties=False):
  rng = np.random.default_rng(seed)
  if ties:
    # Few distinct values: many exact ties across rows, inside rows and across devices.
    p = rng.integers(0, 4, size=(b, c)).astype(np.float32) / 4.0
  else:
    p = rng.dirichlet(np.ones(c), size=b).astype(np.float32)
  labels = rng.integers(0, c, size=b).astype(np.int32)
  return p, labels


# ------------------------------------------------------------------------------------------------
# pseudo-labels
# ------------------------------------------------------------------------------------------------


def test_pseudo_labels_hand_example():
  p = jnp.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]])
  y = jnp.array([0, 1])
  # Rule B, k=1.5, B=2: true labels + round(0.5*2)=1 other: the 0.4 at (1, 0).
  np.testing.assert_array_equal(ak.average_k_pseudo_labels(p, y, k=1.5),
                                [[1, 0, 0], [1, 1, 0]])
  # Rule A, k=1.5: the 3 largest entries 0.7, 0.5, 0.4.
  np.testing.assert_array_equal(ak.average_k_pseudo_labels(p, y, k=1.5, include_true=False),
                                [[1, 0, 0], [1, 1, 0]])
  # Rule A with a label that does not rank: y_0 = 2 (0.1) is not selected.
  np.testing.assert_array_equal(
      ak.average_k_pseudo_labels(p, jnp.array([2, 1]), k=1.0, include_true=False),
      [[1, 0, 0], [0, 1, 0]])
  # Rule B keeps it whatever its probability.
  np.testing.assert_array_equal(ak.average_k_pseudo_labels(p, jnp.array([2, 1]), k=1.0),
                                [[0, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize("include_true", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1.0, 1.5, 2.0, 2.7, 5.0])
def test_pseudo_labels_match_numpy(include_true, ties, k):
  p, y = rand_probs(int(10 * k) + ties, 12, 5, ties=ties)
  got = np.asarray(ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=k,
                                              include_true=include_true))
  want = np_pseudo_labels(p, y, k, include_true)
  np.testing.assert_array_equal(got, want)
  expected_count = (12 + np_round((k - 1) * 12)) if include_true else np_round(k * 12)
  assert got.sum() == expected_count
  assert set(np.unique(got)) <= {0.0, 1.0}
  if include_true:
    assert np.all(got[np.arange(12), y] == 1)


@pytest.mark.parametrize("include_true", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_pseudo_labels_many_classes_per_row_preselection(include_true, ties):
  # n < num_classes: the per-row top-n pre-selection path; compared on one and on 4 devices.
  p, y = rand_probs(21 + ties, 8, 40, ties=ties)
  for k in (1.25, 1.5, 3.0):
    want = np_pseudo_labels(p, y, k, include_true)
    got = ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=k,
                                     include_true=include_true)
    np.testing.assert_array_equal(got, want)
    fn = functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true,
                           axis_name="data")
    got4 = jax.block_until_ready(
        jax.pmap(fn, axis_name="data")(p.reshape(4, 2, 40), y.reshape(4, 2)))
    np.testing.assert_array_equal(np.asarray(got4).reshape(8, 40), want)


def test_pseudo_labels_all_tied_exact_count():
  p = jnp.full((4, 3), 0.25)
  y = jnp.array([0, 1, 2, 0])
  got = np.asarray(ak.average_k_pseudo_labels(p, y, k=2.0))
  assert got.sum() == 8  # a >= threshold would give all 12
  # Ties go to the lower row-major index among the non-true entries.
  np.testing.assert_array_equal(got, [[1, 1, 1], [1, 1, 1], [0, 0, 1], [1, 0, 0]])


def test_pseudo_labels_rank_invariant_and_float32():
  p, y = rand_probs(3, 16, 7)
  a = ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=2.0)
  b = ak.average_k_pseudo_labels(jnp.log(jnp.asarray(p)), jnp.asarray(y), k=2.0)
  c = ak.average_k_pseudo_labels(jnp.asarray(p, jnp.bfloat16), jnp.asarray(y), k=2.0)
  np.testing.assert_array_equal(a, b)
  assert a.dtype == jnp.float32 and c.dtype == jnp.float32
  assert float(c.sum()) == float(a.sum())


def test_pseudo_labels_minus_inf_scores_never_replace_labels():
  # Log-probabilities with -inf: rule B must still select exactly n non-true entries.
  logp = jnp.array([[0.0, -jnp.inf, -jnp.inf], [-jnp.inf, 0.0, -jnp.inf]])
  got = np.asarray(ak.average_k_pseudo_labels(logp, jnp.array([0, 1]), k=2.0))
  # All 4 candidates tie at -inf: the 2 lowest row-major ones, (0, 1) and (0, 2), win.
  np.testing.assert_array_equal(got, [[1, 1, 1], [0, 1, 0]])
  np.testing.assert_array_equal(got, np_pseudo_labels(np.asarray(logp), [0, 1], 2.0))


def test_pseudo_labels_jit_and_no_gradient():
  p, y = rand_probs(5, 8, 4)
  f = jax.jit(functools.partial(ak.average_k_pseudo_labels, k=1.5))
  np.testing.assert_array_equal(f(jnp.asarray(p), jnp.asarray(y)), np_pseudo_labels(p, y, 1.5))
  g = jax.grad(lambda q: jnp.sum(ak.average_k_pseudo_labels(q, jnp.asarray(y), k=1.5) * q))(
      jnp.asarray(p))
  # d/dq sum(stop_gradient(mask) * q) = mask: the mask itself carries no gradient.
  np.testing.assert_array_equal(g, np_pseudo_labels(p, y, 1.5))


def test_pseudo_labels_vmap_over_independent_batches():
  ps, ys = zip(*[rand_probs(s, 6, 4, ties=s % 2 == 0) for s in range(3)])
  ps, ys = np.stack(ps), np.stack(ys)
  got = jax.vmap(functools.partial(ak.average_k_pseudo_labels, k=2.5))(ps, ys)
  for i in range(3):
    np.testing.assert_array_equal(got[i], np_pseudo_labels(ps[i], ys[i], 2.5))


@pytest.mark.parametrize(
    "k, include_true, match",
    [(0.0, True, "k"), (-1.0, False, "k"), (5.5, True, r"\(0, 5\]"), (0.5, True, "k >= 1"),
     (0.05, False, "rounds to 0"), (float("nan"), True, "finite")])
def test_pseudo_labels_bad_k(k, include_true, match):
  p, y = rand_probs(0, 4, 5)
  with pytest.raises(ValueError, match=match):
    ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=k, include_true=include_true)


def test_pseudo_labels_complex_k_is_refused_by_name():
  """A complex k passes the numeric-dtype check and fails in float(): the error still names `k`.
  (Killed mutant of the clean-clone pass: TypeError left out of the except clause.)"""
  p, y = rand_probs(0, 4, 5)
  with pytest.raises(TypeError, match=r"`k` must be a number, got \(2\+1j\)"):
    ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=2 + 1j)


def test_pseudo_labels_bad_inputs():
  p, y = rand_probs(0, 4, 5)
  with pytest.raises(ValueError, match="probs"):
    ak.average_k_pseudo_labels(jnp.asarray(p[0]), jnp.asarray(y), k=2.0)
  with pytest.raises(ValueError, match="labels"):
    ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y[:3]), k=2.0)
  with pytest.raises(TypeError, match="probs"):
    ak.average_k_pseudo_labels(jnp.asarray(p > 0.1, jnp.int32), jnp.asarray(y), k=2.0)
  with pytest.raises(TypeError, match="labels"):
    ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y, jnp.float32), k=2.0)
  with pytest.raises(TypeError, match="static"):
    jax.jit(lambda kk: ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=kk))(2.0)
  with pytest.raises(ValueError, match="scalar"):
    ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=np.array([2.0, 3.0]))


def test_num_pseudo_positives_counts():
  assert ak.num_pseudo_positives(1.5, 10, 4) == 5
  assert ak.num_pseudo_positives(1.25, 2, 4) == 1  # 0.5 rounds half-up
  assert ak.num_pseudo_positives(2.0, 10, 4, include_true=False) == 20
  assert ak.num_pseudo_positives(0.1, 10, 4, include_true=False) == 1  # rounds to 1: allowed
  with pytest.raises(ValueError, match=r"`k`=0.04 with a batch of 10 gives k\*B = 0.4, which "
                                       r"rounds to 0"):
    ak.num_pseudo_positives(0.04, 10, 4, include_true=False)
  assert ak.num_pseudo_positives(4.0, 3, 4) == 9  # every candidate
  with pytest.raises(ValueError, match="not reachable"):
    ak.num_pseudo_positives(0.99, 10, 4)
  # found by mutation testing (docs/testing.md, third pass): include_true is keyword-only, and the
  # "rounds to 0" message gives (k - 1) * B
  with pytest.raises(TypeError):
    ak.num_pseudo_positives(2.0, 10, 4, False)
  with pytest.raises(ValueError, match=r"`k`=1.04 with a batch of 10 gives \(k - 1\)\*B = 0.4, "
                                       r"which rounds to 0 pseudo-positives"):
    ak.num_pseudo_positives(1.04, 10, 4)


# ------------------------------------------------------------------------------------------------
# 4 devices: the threshold is over the global batch
# ------------------------------------------------------------------------------------------------


def _mesh():
  return jax.make_mesh((4,), ("data",))


def _shard(x, mesh):
  return jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("data")))


@pytest.mark.parametrize("include_true", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_pseudo_labels_four_devices_equal_whole_batch(include_true, ties):
  assert jax.device_count() == 4
  p, y = rand_probs(7 + ties, 16, 5, ties=ties)
  k = 2.3
  want = np_pseudo_labels(p, y, k, include_true)
  np.testing.assert_array_equal(
      ak.average_k_pseudo_labels(jnp.asarray(p), jnp.asarray(y), k=k, include_true=include_true),
      want)
  fn = functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true,
                         axis_name="data")
  got_pmap = jax.block_until_ready(
      jax.pmap(fn, axis_name="data")(p.reshape(4, 4, 5), y.reshape(4, 4)))
  np.testing.assert_array_equal(np.asarray(got_pmap).reshape(16, 5), want)
  mesh = _mesh()
  sm = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data")),
                             out_specs=P("data")))
  got_sm = jax.block_until_ready(sm(_shard(p, mesh), _shard(y, mesh)))
  np.testing.assert_array_equal(np.asarray(got_sm), want)


def test_pseudo_labels_four_devices_concentrated_on_one_device():
  # All the large entries live on device 2: it must receive more positives than its share.
  p, y = rand_probs(11, 8, 3)
  p = p * 0.1
  p[4:6] += 0.8
  want = np_pseudo_labels(p, y, 1.5, include_true=False)
  got = jax.block_until_ready(jax.pmap(
      functools.partial(ak.average_k_pseudo_labels, k=1.5, include_true=False,
                        axis_name="data"), axis_name="data")(p.reshape(4, 2, 3), y.reshape(4, 2)))
  np.testing.assert_array_equal(np.asarray(got).reshape(8, 3), want)
  assert want[4:6].sum() == 6  # the whole local block is selected


def test_pseudo_labels_count_uses_global_batch():
  p, y = rand_probs(0, 16, 3)
  # k = 0.1: 0.1 * 4 local rows would round to 0, but the global 0.1 * 16 = 1.6 gives 2.
  fn = functools.partial(ak.average_k_pseudo_labels, k=0.1, include_true=False, axis_name="data")
  got = jax.block_until_ready(jax.pmap(fn, axis_name="data")(p.reshape(4, 4, 3), y.reshape(4, 4)))
  np.testing.assert_array_equal(np.asarray(got).reshape(16, 3),
                                np_pseudo_labels(p, y, 0.1, include_true=False))
  assert np.asarray(got).sum() == 2
  # k = 0.02: 0.32 global positives round to 0: not reachable, raised at trace time.
  fn = functools.partial(ak.average_k_pseudo_labels, k=0.02, include_true=False,
                         axis_name="data")
  with pytest.raises(ValueError, match="rounds to 0"):
    jax.pmap(fn, axis_name="data")(p.reshape(4, 4, 3), y.reshape(4, 4))


# ------------------------------------------------------------------------------------------------
# the selection (uint32 keys, bisection, block pre-selection) against independent references
# ------------------------------------------------------------------------------------------------


def np_lexsort_pseudo_labels(scores, labels, n, include_true):
  """The n largest candidates by (-score, flat index) with np.lexsort (scores without NaN)."""
  scores = np.asarray(scores, np.float32)
  b, c = scores.shape
  flat = np.arange(b * c)
  cand = np.ones(b * c, bool)
  if include_true:
    cand[np.arange(b) * c + labels] = False
  vals, idx = scores.reshape(-1)[cand].astype(np.float64), flat[cand]
  order = np.lexsort((idx, -vals))  # last key is primary: -score, then the flat index
  out = np.zeros(b * c, np.float32)
  out[idx[order[:n]]] = 1.0
  if include_true:
    out[np.arange(b) * c + labels] = 1.0
  return out.reshape(b, c)


def tied_scores(seed, b, c):
  """Scores with many exact ties (a few levels), some -inf, some distinct values; no NaN, no -0."""
  rng = np.random.default_rng(seed)
  levels = np.array([-np.inf, -3.0, -1.0, -0.5, 0.0, 0.25, 2.0], np.float32)
  s = levels[rng.integers(0, len(levels), size=(b, c))]
  distinct = rng.random((b, c)) < 0.3
  s[distinct] = rng.standard_normal(int(distinct.sum())).astype(np.float32)
  return s, rng.integers(0, c, size=b).astype(np.int32)


# (include_true, k) for B = 32, C = 50: n = round((k - 1) B) or round(k B), below and above C.
SELECTION_CASES = [(True, 1.03), (True, 1.25), (True, 3.0), (True, 20.0), (True, 50.0),
                   (False, 0.05), (False, 0.5), (False, 4.0), (False, 30.0), (False, 50.0)]


def _n_of(include_true, k, b):
  return np_round((k - 1) * b) if include_true else np_round(k * b)


@pytest.mark.parametrize("include_true, k", SELECTION_CASES)
def test_selection_equals_lexsort_reference_jit_pmap_shard_map(include_true, k):
  b, c = 32, 50
  s, y = tied_scores(int(10 * k) + include_true, b, c)
  n = _n_of(include_true, k, b)
  assert (n < c) == (k in (1.03, 1.25, 0.05, 0.5))
  want = np_lexsort_pseudo_labels(s, y, n, include_true)
  assert want.sum() == n + (b if include_true else 0)
  fn = functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true)
  np.testing.assert_array_equal(jax.jit(fn)(s, y), want)
  dist = functools.partial(fn, axis_name="data")
  got = jax.pmap(dist, axis_name="data")(s.reshape(4, b // 4, c), y.reshape(4, b // 4))
  np.testing.assert_array_equal(np.asarray(got).reshape(b, c), want)
  for dev in (1, 4):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:dev]), ("data",))
    sm = jax.jit(jax.shard_map(dist, mesh=mesh, in_specs=(P("data"), P("data")),
                               out_specs=P("data")))
    got = sm(jax.device_put(s, NamedSharding(mesh, P("data"))),
             jax.device_put(y, NamedSharding(mesh, P("data"))))
    np.testing.assert_array_equal(np.asarray(got), want)


def test_selection_block_path_is_taken_for_these_sizes():
  # The cases above exercise the block pre-selection (and its recursion) on 1 and 4 devices.
  assert ak._block_size(32 * 50, 8, 1, 50) == 10
  assert ak._block_size(32 * 50 // 10, 8, 1, None) is not None  # a second level
  assert ak._block_size(8 * 50, 8, 4, 50) is not None
  assert ak._block_size(32 * 50, 64, 1, None) == 5
  assert ak._block_size(32 * 50, 960, 1, None) is None  # 4 n > B C: exact on all entries


def test_block_size_choices():
  # g divides the length, g * n <= length * devices, 4 n <= length * devices, closest (in ratio)
  # to sqrt(length / n); with `row`, g divides the row or is a multiple of it.
  assert ak._divisors(1) == [1]
  assert ak._divisors(12) == [1, 2, 3, 4, 6, 12]
  assert ak._divisors(16) == [1, 2, 4, 8, 16]
  assert ak._block_size(409600, 4096, 1, 100) == 10   # sqrt(100) = 10
  assert ak._block_size(60, 1, 1, None) == 6    # 6 and 10 tie exactly around sqrt(60): the smaller
  assert ak._block_size(60, 4, 1, None) == 4    # sqrt(15) = 3.87: 4 (ratio 1.03), not 3 or 5 (1.29)
  assert ak._block_size(60, 7, 1, None) == 3    # sqrt(8.57) = 2.93: 3 (1.02), 2 (1.46), 4 (1.37)
  assert ak._block_size(60, 7, 1, 5) == 5       # rule B, C = 5: only 5 (10 > 60 / 7)
  assert ak._block_size(60, 7, 1, 4) == 4       # divisors of the row: 2 (1.46), 4 (1.37)
  assert ak._block_size(60, 7, 1, 3) == 3       # 3 or its multiple 6 (2.05)
  assert ak._block_size(60, 13, 1, 5) is None   # rule B, C = 5: 5 would give 12 < n = 13 blocks
  assert ak._block_size(40, 10, 1, None) == 2   # 4 n = 40 = length: allowed; sqrt(4) = 2
  assert ak._block_size(39, 10, 1, None) is None
  assert ak._block_size(10, 10, 4, None) == 2   # 40 entries on 4 devices: 2 (5 gives 8 < n blocks)
  assert ak._block_size(10, 10, 3, None) is None
  assert ak._block_size(7, 1, 1, None) == 7     # a prime length: the whole array is one block
  assert ak._block_size(64, 15, 1, None) == 2   # sqrt(4.27) = 2.07
  assert ak._block_size(36, 2, 1, None) == 4    # sqrt(18) = 4.24: 4 (1.06), 3 and 6 (1.41)
  assert ak._block_size(100, 20, 1, None) == 2  # sqrt(5) = 2.24: 2 (1.12), 4 (1.79), 5 (2.24)


def _bisection_loops(include_true, k, b=32, c=50):
  fn = functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true)
  jaxpr = jax.make_jaxpr(fn)(np.zeros((b, c), np.float32), np.zeros(b, np.int32)).jaxpr
  return sum(e.primitive.name in ("scan", "while") for e in jaxpr.eqns)


def test_selection_levels_of_the_block_pre_selection():
  # One bisection per level and one on the final candidates: B C = 1600, rule B n = 8 takes blocks
  # of 10, then of 4 or 5 and of 2 on the maxima (4 bisections); rule A n = 16 blocks of 10 and 4
  # (3); n = 960 > 1600 / 4 none (1); k = 1 with rule B none at all (the labels only).
  assert _bisection_loops(True, 1.25) == 4
  assert _bisection_loops(False, 0.5) == 3
  assert _bisection_loops(False, 30.0) == 1
  assert _bisection_loops(True, 1.0) == 0


def _topk_reference(scores, labels, n, include_true):
  """The selection with lax.top_k (XLA's total order of float32, ties to the lower index) over the
  candidates in flat order: the implementation this module had before the uint32 keys."""
  scores = np.asarray(scores, np.float32)
  b, c = scores.shape
  flat = np.arange(b * c)
  cand = np.ones(b * c, bool)
  if include_true:
    cand[flat.reshape(b, c)[np.arange(b), labels]] = False
  _, pos = jax.lax.top_k(jnp.asarray(scores.reshape(-1)[cand]), n)
  out = np.zeros(b * c, np.float32)
  out[flat[cand][np.asarray(pos)]] = 1.0
  if include_true:
    out[flat.reshape(b, c)[np.arange(b), labels]] = 1.0
  return out.reshape(b, c)


def _bits(*words):
  return np.array(words, np.uint32).view(np.float32)


def test_order_keys_follow_top_k_total_order():
  # ascending in top_k's order: sign-bit NaNs (all ones, then the x86 default NaN), -inf, -1,
  # the smallest negative subnormal, -0.0, +0.0, the smallest subnormal, 1, +inf, NaN, NaN payloads
  # up to the all-ones one below the sign bit (the largest key)
  x = _bits(0xFFFFFFFF, 0xFFC00000, 0xFF800000, 0xBF800000, 0x80000001, 0x80000000,
            0x00000000, 0x00000001, 0x3F800000, 0x7F800000, 0x7FC00000, 0x7FC00001, 0x7FFFFFFF)
  keys = np.asarray(ak._order_keys(jnp.asarray(x)))
  assert keys.dtype == np.uint32
  assert np.all(np.diff(keys.astype(np.int64)) > 0)
  # by hand: negative -> inverted bits, non-negative -> sign bit set
  assert keys[0] == 0 and keys[1] == 0x003FFFFF and keys[5] == 0x7FFFFFFF
  assert keys[6] == 0x80000000 and keys[-2] == 0xFFC00001 and keys[-1] == 0xFFFFFFFF
  _, idx = jax.lax.top_k(jnp.asarray(x), x.size)
  np.testing.assert_array_equal(np.asarray(idx), np.arange(x.size)[::-1])


@pytest.mark.parametrize("include_true", [True, False])
def test_selection_nan_signed_zero_order_equals_top_k(include_true):
  # NaNs of both signs, infinities, signed zeros and subnormals, many of each (ties), and the
  # all-ones NaN (the lowest key, the same key as the masked-out labels of rule B).
  rng = np.random.default_rng(5)
  pool = _bits(0xFFFFFFFF, 0xFFC00000, 0xFF800000, 0xBF800000, 0x80000001, 0x80000000,
               0x00000000, 0x00000001, 0x3F800000, 0x7F800000, 0x7FC00000, 0x7FFFFFFF)
  b, c = 16, 12
  s = pool[rng.integers(0, pool.size, size=(b, c))]
  y = rng.integers(0, c, size=b).astype(np.int32)
  for k in (1.5, 2.0, 6.0, 11.0, 11.9, 12.0) if include_true else (0.5, 2.0, 6.0, 11.9, 12.0):
    n = _n_of(include_true, k, b)
    want = _topk_reference(s, y, n, include_true)
    fn = functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true)
    np.testing.assert_array_equal(fn(jnp.asarray(s), jnp.asarray(y)), want, err_msg=str(k))
    got = jax.pmap(functools.partial(fn, axis_name="data"), axis_name="data")(
        s.reshape(4, b // 4, c), y.reshape(4, b // 4))
    np.testing.assert_array_equal(np.asarray(got).reshape(b, c), want, err_msg=str(k))


def test_selection_all_lowest_key_rule_b_never_takes_labels():
  # Every score is the all-ones NaN (key 0 = the labels' key): the n selected are the first n
  # non-label entries in row-major order, on one device and on four.
  b, c = 8, 6
  s = np.broadcast_to(_bits(0xFFFFFFFF), (b, c)).copy()
  y = np.array([0, 5, 2, 2, 1, 0, 3, 4], np.int32)
  for k in (1.5, 3.0, 6.0):
    want = np_pseudo_labels(np.zeros((b, c), np.float32), y, k)  # all tied: the same choice
    got = ak.average_k_pseudo_labels(jnp.asarray(s), jnp.asarray(y), k=k)
    np.testing.assert_array_equal(got, want)
    got4 = jax.pmap(functools.partial(ak.average_k_pseudo_labels, k=k, axis_name="data"),
                    axis_name="data")(s.reshape(4, 2, c), y.reshape(4, 2))
    np.testing.assert_array_equal(np.asarray(got4).reshape(b, c), want)


def test_selection_realistic_size_log_softmax():
  # B = 512, C = 100 log-probabilities (continuous, few ties), rule B k = 2 and rule A k = 3.
  rng = np.random.default_rng(3)
  z = rng.standard_normal((512, 100)).astype(np.float32) * 2
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(z)))
  y = rng.integers(0, 100, 512).astype(np.int32)
  for include_true, k in ((True, 2.0), (False, 3.0)):
    want = np_lexsort_pseudo_labels(logp, y, _n_of(include_true, k, 512), include_true)
    got = jax.jit(functools.partial(ak.average_k_pseudo_labels, k=k, include_true=include_true))(
        logp, y)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# two-head loss
# ------------------------------------------------------------------------------------------------


def _two_head_inputs(seed, b=8, c=5):
  rng = np.random.default_rng(seed)
  zs = rng.normal(size=(b, c)).astype(np.float32) * 2
  zm = rng.normal(size=(b, c)).astype(np.float32) * 2
  y = rng.integers(0, c, size=b).astype(np.int32)
  return zs, zm, y


@pytest.mark.parametrize("include_true", [True, False])
@pytest.mark.parametrize("k", [1.0, 1.5, 3.0])
def test_two_head_matches_numpy(include_true, k):
  zs, zm, y = _two_head_inputs(int(k * 10))
  got = ak.two_head_loss(zs, zm, y, k=k, weight=0.7, include_true=include_true)
  want = np_two_head(zs, zm, y, k, 0.7, include_true)
  assert got.shape == (8,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_two_head_weight_zero_is_cross_entropy():
  zs, zm, y = _two_head_inputs(1)
  got = ak.two_head_loss(zs, zm, y, k=2.0, weight=0.0)
  np.testing.assert_allclose(got, softmax_cross_entropy(zs, y), rtol=1e-6)
  np.testing.assert_allclose(got, -np_log_softmax(zs)[np.arange(8), y], rtol=1e-5)


def test_two_head_bce_part_matches_optax():
  zs, zm, y = _two_head_inputs(2)
  diff = ak.two_head_loss(zs, zm, y, k=2.0, weight=1.0) - ak.two_head_loss(zs, zm, y, k=2.0,
                                                                           weight=0.0)
  pl = np_pseudo_labels(np.exp(np_log_softmax(zs)), y, 2.0)
  want = np.asarray(optax.sigmoid_binary_cross_entropy(zm, pl)).mean(-1)
  np.testing.assert_allclose(diff, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ak.mean_binary_cross_entropy(zm, pl), want, rtol=1e-5, atol=1e-6)


def _np_bce(z, t):
  z = np.asarray(z, np.float64)
  return np.logaddexp(0.0, z) - np.asarray(t, np.float64) * z


def _np_sigmoid(z):
  z = np.asarray(z, np.float64)
  return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))),
                  np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


_BCE_Z = np.array([-1e4, -120.0, -80.0, -30.0, -5.0, -0.7, -1e-3, 0.0, 1e-3, 0.7, 5.0, 30.0,
                   80.0, 120.0, 1e4], np.float32)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_binary_cross_entropy_values_and_derivatives_numpy(t):
  """The hand-written softplus (own JVP, issue 18) against float64 numpy, large |z| included."""
  z = jnp.asarray(_BCE_Z)
  tt = jnp.full_like(z, t)
  np.testing.assert_allclose(ak._binary_cross_entropy(z, tt), _np_bce(_BCE_Z, t), rtol=1e-6,
                             atol=1e-6)
  # d/dz = sigmoid(z) - t, d/dt = -z, elementwise; finite even where exp(|z|) overflows.
  gz, gt = jax.grad(lambda a, b: jnp.sum(ak._binary_cross_entropy(a, b)), argnums=(0, 1))(z, tt)
  np.testing.assert_allclose(gz, _np_sigmoid(_BCE_Z) - t, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(gz, jax.nn.sigmoid(z) - t, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(gt, -_BCE_Z, rtol=0)
  # Second derivative in z: sigmoid (1 - sigmoid), through the JVP rule itself.
  g2 = jax.vmap(jax.grad(jax.grad(lambda a: ak._binary_cross_entropy(a, jnp.float32(t)))))(z)
  s = _np_sigmoid(_BCE_Z)
  np.testing.assert_allclose(g2, s * (1 - s), rtol=1e-5, atol=1e-7)


def test_binary_cross_entropy_forward_reverse_jit_and_check_grads():
  rng = np.random.default_rng(11)
  z = jnp.asarray(rng.normal(size=(4, 6)) * 3, jnp.float32)
  t = jnp.asarray(rng.uniform(size=(4, 6)), jnp.float32)
  f = lambda a, b: jnp.sum(ak._binary_cross_entropy(a, b) ** 2)
  check_grads(f, (z, t), order=2, modes=["fwd", "rev"], eps=1e-2, atol=2e-2, rtol=2e-2)
  jf = jax.jit(jax.jacfwd(lambda a: ak._binary_cross_entropy(a, t)))(z)
  jr = jax.jacrev(lambda a: ak._binary_cross_entropy(a, t))(z)
  np.testing.assert_allclose(jf, jr, rtol=1e-6, atol=1e-7)
  diag = np.einsum("ijij->ij", np.asarray(jf))
  np.testing.assert_allclose(diag, _np_sigmoid(np.asarray(z)) - np.asarray(t), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(jax.jit(ak._binary_cross_entropy)(z, t),
                             _np_bce(np.asarray(z), np.asarray(t)), rtol=1e-6, atol=1e-6)


def test_binary_cross_entropy_nan_and_infinities_like_the_plain_formula():
  z = jnp.array([np.nan, np.inf, -np.inf, np.inf, -np.inf, 2.0, np.inf], jnp.float32)
  t = jnp.array([0.5, 1.0, 0.0, 0.0, 1.0, np.nan, 0.5], jnp.float32)
  plain = jax.nn.softplus(z) - t * z
  got = ak._binary_cross_entropy(z, t)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(plain))
  np.testing.assert_array_equal(got, plain)
  # By hand: nan; inf - 1*inf; 0 - 0*(-inf); inf - 0*inf; 0 - 1*(-inf) = +inf; t nan; inf - inf/2.
  np.testing.assert_array_equal(np.isnan(got), [1, 1, 1, 1, 0, 1, 1])
  assert got[4] == np.inf


def test_binary_cross_entropy_bfloat16():
  z = jnp.asarray(_BCE_Z, jnp.bfloat16)
  got = ak._binary_cross_entropy(z, jnp.zeros_like(z))
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32), _np_bce(np.asarray(z, np.float32), 0.0),
                             rtol=1e-2, atol=1e-2)
  g = jax.grad(lambda a: jnp.sum(ak._binary_cross_entropy(a, jnp.zeros_like(a))))(z)
  assert g.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(g, np.float32), _np_sigmoid(np.asarray(z, np.float32)),
                             rtol=1e-2, atol=1e-2)


def test_two_head_gradients():
  zs, zm, y = _two_head_inputs(3)
  f = lambda a, b: jnp.sum(ak.two_head_loss(a, b, y, k=1.5, weight=0.5))
  # Pseudo-labels are piecewise constant; random logits are far from rank changes at eps=1e-3.
  check_grads(f, (jnp.asarray(zs), jnp.asarray(zm)), order=1, modes=["rev"], eps=1e-3,
              atol=1e-2, rtol=1e-2)
  # Analytic gradients: softmax head gets only CE's (p - onehot); multi-label head
  # weight * (sigmoid(z) - P) / C (the pseudo-labels are stop-gradient).
  gs, gm = jax.grad(f, argnums=(0, 1))(jnp.asarray(zs), jnp.asarray(zm))
  p = np.exp(np_log_softmax(zs))
  onehot = np.eye(5)[y]
  np.testing.assert_allclose(gs, p - onehot, atol=1e-5)
  pl = np_pseudo_labels(p, y, 1.5)
  np.testing.assert_allclose(gm, 0.5 * (1 / (1 + np.exp(-zm)) - pl) / 5, atol=1e-6)


def test_two_head_jit_vmap_where_bf16():
  zs, zm, y = _two_head_inputs(4)
  f = jax.jit(functools.partial(ak.two_head_loss, k=2.0, weight=0.3))
  want = np_two_head(zs, zm, y, 2.0, 0.3)
  np.testing.assert_allclose(f(zs, zm, y), want, rtol=1e-5, atol=1e-5)
  # vmap over 3 independent batches = per-batch loop.
  batches = [_two_head_inputs(s) for s in (5, 6, 7)]
  stacked = [np.stack(x) for x in zip(*batches)]
  got = jax.vmap(functools.partial(ak.two_head_loss, k=2.0, weight=0.3))(*stacked)
  for i, (a, b, c) in enumerate(batches):
    np.testing.assert_allclose(got[i], np_two_head(a, b, c, 2.0, 0.3), rtol=1e-5, atol=1e-5)
  where = np.array([1, 0, 1, 1, 0, 1, 1, 1], bool)
  masked = ak.two_head_loss(zs, zm, y, k=2.0, weight=0.3, where=where)
  np.testing.assert_allclose(masked, np.where(where, want, 0.0), rtol=1e-5, atol=1e-5)
  # bfloat16 logits are computed in float32.
  out = ak.two_head_loss(jnp.asarray(zs, jnp.bfloat16), jnp.asarray(zm, jnp.bfloat16), y, k=2.0)
  assert out.dtype == jnp.float32
  # A traced weight (warm-up schedule) is allowed.
  wj = jax.jit(lambda w: ak.two_head_loss(zs, zm, y, k=2.0, weight=w))(0.3)
  np.testing.assert_allclose(wj, want, rtol=1e-5, atol=1e-5)


def test_two_head_four_devices_equal_whole_batch():
  zs, zm, y = _two_head_inputs(8, b=16, c=4)
  want = np_two_head(zs, zm, y, 1.75, 0.5)
  fn = functools.partial(ak.two_head_loss, k=1.75, weight=0.5, axis_name="data")
  got = jax.block_until_ready(jax.pmap(fn, axis_name="data")(
      zs.reshape(4, 4, 4), zm.reshape(4, 4, 4), y.reshape(4, 4)))
  np.testing.assert_allclose(np.asarray(got).reshape(16), want, rtol=1e-5, atol=1e-5)
  # Per-device pseudo-labels differ from the global ones here, so this test can fail.
  local = np.concatenate([np_two_head(zs[i:i + 4], zm[i:i + 4], y[i:i + 4], 1.75, 0.5)
                          for i in range(0, 16, 4)])
  assert not np.allclose(local, want)


def test_two_head_errors():
  zs, zm, y = _two_head_inputs(9)
  with pytest.raises(ValueError, match="multilabel_logits"):
    ak.two_head_loss(zs, zm[:, :3], y, k=2.0)
  with pytest.raises(ValueError, match="softmax_logits"):
    ak.two_head_loss(zs[0], zm, y, k=2.0)
  with pytest.raises(ValueError, match="where"):
    ak.two_head_loss(zs, zm, y, k=2.0, where=np.ones(3, bool))
  with pytest.raises(ValueError, match="weight"):
    ak.two_head_loss(zs, zm, y, k=2.0, weight=-1.0)
  with pytest.raises(ValueError, match="k"):
    ak.two_head_loss(zs, zm, y, k=6.0)
  with pytest.raises(TypeError, match="multilabel_logits"):
    ak.two_head_loss(zs, zm.astype(np.int32), y, k=2.0)
  # found by mutation testing: the hyperparameters are keyword-only, the default weight is 1
  with pytest.raises(TypeError):
    ak.two_head_loss(zs, zm, y, 2.0)
  np.testing.assert_array_equal(ak.two_head_loss(zs, zm, y, k=2.0),
                                ak.two_head_loss(zs, zm, y, k=2.0, weight=1.0))
  np.testing.assert_allclose(ak.two_head_loss(zs, zm, y, k=2.0), np_two_head(zs, zm, y, 2.0, 1.0),
                             rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------------


def test_assume_negative_matches_optax_and_grads():
  _, zm, y = _two_head_inputs(10)
  want = np.asarray(optax.sigmoid_binary_cross_entropy(zm, np.eye(5)[y])).mean(-1)
  np.testing.assert_allclose(ak.assume_negative_loss(zm, y), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ak.assume_negative_loss(zm, y), np_bce(zm, np.eye(5)[y]).mean(-1),
                             rtol=1e-5)
  np.testing.assert_allclose(jax.jit(ak.assume_negative_loss)(zm, y), want, rtol=1e-5, atol=1e-6)
  check_grads(lambda z: jnp.sum(ak.assume_negative_loss(z, y)), (jnp.asarray(zm),), order=1,
              eps=1e-2, atol=1e-2, rtol=1e-2)
  where = np.arange(8) % 2 == 0
  np.testing.assert_allclose(ak.assume_negative_loss(zm, y, where=where),
                             np.where(where, want, 0), rtol=1e-5, atol=1e-6)
  # Large logits stay finite (stable softplus form).
  assert np.isfinite(np.asarray(ak.assume_negative_loss(jnp.full((1, 3), 200.0),
                                                        jnp.array([0])))).all()
  with pytest.raises(ValueError, match="labels"):
    ak.assume_negative_loss(zm, y[:2])
  with pytest.raises(TypeError):  # found by mutation testing: `where` is keyword-only
    ak.assume_negative_loss(zm, y, None)


def test_expected_positive_regularizer_numpy_grads_where():
  _, zm, _ = _two_head_inputs(11)
  got = ak.expected_positive_regularizer(zm, k=2.0)
  assert got.shape == ()
  np.testing.assert_allclose(got, np_epr(zm, 2.0), rtol=1e-5)
  np.testing.assert_allclose(jax.jit(functools.partial(ak.expected_positive_regularizer, k=2.0))(
      zm), np_epr(zm, 2.0), rtol=1e-5)
  # Hand numbers: zero logits -> 5 * 0.5 = 2.5 expected positives per row.
  np.testing.assert_allclose(ak.expected_positive_regularizer(jnp.zeros((3, 5)), k=1.5),
                             (1.0 / 5) ** 2, rtol=1e-6)
  check_grads(lambda z: ak.expected_positive_regularizer(z, k=2.0), (jnp.asarray(zm),), order=1,
              eps=1e-2, atol=1e-3, rtol=1e-2)
  where = np.array([1, 1, 0, 1, 0, 0, 1, 1], bool)
  np.testing.assert_allclose(ak.expected_positive_regularizer(zm, k=2.0, where=where),
                             np_epr(zm, 2.0, where), rtol=1e-5)
  # found by mutation testing: one unmasked row is its own mean (the count floor 1 is not 2)
  one = np.zeros(8, bool)
  one[3] = True
  np.testing.assert_allclose(ak.expected_positive_regularizer(zm, k=2.0, where=one),
                             np_epr(zm, 2.0, one), rtol=1e-5)
  with pytest.raises(ValueError, match="k"):
    ak.expected_positive_regularizer(zm, k=0.0)
  with pytest.raises(TypeError):  # found by mutation testing: `k` is keyword-only
    ak.expected_positive_regularizer(zm, 2.0)
  with pytest.raises(ValueError, match="multilabel_logits"):
    ak.expected_positive_regularizer(zm[0], k=1.0)


def test_expected_positive_regularizer_four_devices():
  _, zm, _ = _two_head_inputs(12, b=16, c=5)
  where = (np.arange(16) % 3 != 0)
  fn = functools.partial(ak.expected_positive_regularizer, k=1.5, axis_name="data")
  got = jax.block_until_ready(jax.pmap(fn, axis_name="data")(
      zm.reshape(4, 4, 5), where=where.reshape(4, 4)))
  np.testing.assert_allclose(np.asarray(got), np.full(4, np_epr(zm, 1.5, where)), rtol=1e-5)
  mesh = _mesh()
  sm = jax.jit(jax.shard_map(lambda z: fn(z)[None], mesh=mesh, in_specs=P("data"),
                             out_specs=P("data")))
  got_sm = jax.block_until_ready(sm(_shard(zm, mesh)))
  np.testing.assert_allclose(np.asarray(got_sm), np.full(4, np_epr(zm, 1.5)), rtol=1e-5)


def test_reexported_from_losses():
  from labelwise import losses
  for name in ("average_k_pseudo_labels", "two_head_loss", "assume_negative_loss",
               "expected_positive_regularizer", "mean_binary_cross_entropy"):
    assert getattr(losses, name) is getattr(ak, name)
