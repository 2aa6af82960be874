"""Contracts of the public losses API: hyperparameters keyword-only; the host checks' boundaries."""

import inspect

import numpy as np
import pytest

from labelwise import losses

# Options and hyperparameters: wherever a public loss function takes one, it is keyword-only.
_HYPERPARAMETERS = {
    "where", "axis", "axis_name", "eps", "epsilon", "k", "alpha", "beta", "lam", "scale",
    "temperature", "fairness_weight", "fairness", "tol", "max_iter", "step_size", "include_true",
    "weight", "marginal_weight", "normalization", "bisection_steps", "atol", "logit_scale", "form",
    "max_entropy", "init", "has_aux", "cross_entropy"}
# A function whose argument of that name is its data: num_pseudo_positives(k, batch, num_classes).
_DATA_ARGUMENTS = {("num_pseudo_positives", "k")}


def _public_functions():
  return [(name, fn) for name, fn in sorted(vars(losses).items())
          if inspect.isfunction(fn) and not name.startswith("_")]


def test_hyperparameters_are_keyword_only():
  assert len(_public_functions()) > 30
  for name, fn in _public_functions():
    for p in inspect.signature(fn).parameters.values():
      if p.name in _HYPERPARAMETERS and (name, p.name) not in _DATA_ARGUMENTS:
        assert p.kind == p.KEYWORD_ONLY, f"{name}({p.name}=...) must be keyword-only"


def test_keyword_only_hyperparameters_refuse_positions():
  labels = np.array([0, 1])
  with pytest.raises(TypeError):
    losses.hierarchical_targets(labels, np.array([0, 0, 1]), 1.0)
  assert losses.hierarchical_targets(labels, np.array([0, 0, 1]), beta=1.0).shape == (2, 3)
  # simloss_with_targets' options too (the call runs its body, so the tool selects this test for
  # a mutant of its header): with S = I and uniform targets and logits, -log(sum_c t_c p_c) = log 3
  z, t, s = np.zeros((2, 3)), np.full((2, 3), 1.0 / 3.0), np.eye(3)
  with pytest.raises(TypeError):
    losses.simloss_with_targets(z, t, s, -1)
  np.testing.assert_allclose(losses.simloss_with_targets(z, t, s, axis=-1), [np.log(3.0)] * 2,
                             rtol=1e-6)
  # fierce_entropy: two features on two orthogonal codes (noiseless): one example each, 1 bit
  f, codes = np.array([[1.0, 0.1], [0.1, 1.0]], np.float32), np.eye(2, dtype=np.float32)
  with pytest.raises(TypeError):
    losses.fierce_entropy(f, codes, None, 1.0)
  assert float(losses.fierce_entropy(f, codes, temperature=1.0)) == pytest.approx(1.0, abs=1e-5)
  # average_k_pseudo_labels: rule B with k = 1.5 adds the best non-true entry (0.4) to the labels
  p = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]], np.float32)
  with pytest.raises(TypeError):
    losses.average_k_pseudo_labels(p, np.array([0, 1]), 1.5)
  np.testing.assert_array_equal(losses.average_k_pseudo_labels(p, np.array([0, 1]), k=1.5),
                                [[1, 0, 0], [1, 1, 0]])
  # rrr_penalty: the gradient outside the mask, squared: (-2)^2 = 4; a masked example gives 0
  g, m = np.array([[[1.0, -2.0]], [[3.0, 1.0]]]), np.array([[[1, 0]], [[0, 1]]])
  with pytest.raises(TypeError):
    losses.rrr_penalty(g, m, np.array([True, False]))
  np.testing.assert_allclose(losses.rrr_penalty(g, m, where=np.array([True, False])), [4.0, 0.0])
  # gradmask_penalty: |-2| outside the mask; actdiff_penalty: the 3-4-5 distance (hand numbers)
  with pytest.raises(TypeError):
    losses.gradmask_penalty(g, m, np.array([True, False]))
  np.testing.assert_allclose(losses.gradmask_penalty(g, m, where=np.array([True, False])),
                             [2.0, 0.0])
  h, h2 = np.array([[3.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 4.0], [1.0, 1.0]])
  with pytest.raises(TypeError):
    losses.actdiff_penalty(h, h2, np.array([True, True]))
  np.testing.assert_allclose(losses.actdiff_penalty(h, h2, where=np.array([True, True])),
                             [5.0, 0.0])
  # reduce_masked_penalty: (2 + 4) / 2 over the masked examples; the sum is 6
  pen, w = np.array([2.0, 4.0, 9.0]), np.array([1.0, 1.0, 0.0])
  with pytest.raises(TypeError):
    losses.reduce_masked_penalty(pen, w, "sum")
  assert float(losses.reduce_masked_penalty(pen, w)) == pytest.approx(3.0)
  assert float(losses.reduce_masked_penalty(pen, w, normalization="sum")) == pytest.approx(6.0)
  # mask_weights: 1 where some pixel is 0 (a mask), 0 for an all-ones mask or a masked-out example
  masks = np.array([[[1, 0]], [[1, 1]], [[0, 0]]])
  with pytest.raises(TypeError):
    losses.mask_weights(masks, np.array([1, 1, 0]))
  np.testing.assert_array_equal(losses.mask_weights(masks, where=np.array([1, 1, 0])), [1, 0, 0])


def test_similarity_range_tolerance_is_inclusive():
  """Entries up to ``atol`` outside [0, 1] are accepted (and clipped), farther ones are not."""
  atol = 1e-3
  s = np.array([[1.0, -atol], [1.0 + atol, 1.0]])
  np.testing.assert_array_equal(losses.validate_similarity(s, atol=atol), [[1, 0], [1, 1]])
  with pytest.raises(ValueError, match=r"similarity\[0, 1\]"):
    losses.validate_similarity(np.array([[1.0, -2 * atol], [0.0, 1.0]]), atol=atol)


def test_embedding_similarity_needs_a_feature_axis():
  with pytest.raises(ValueError, match=r"`embeddings` must be a \[num_classes, dim\] matrix, got "
                                       r"shape \(3, 0\)"):
    losses.embedding_similarity(np.zeros((3, 0)), 0.0)
  with pytest.raises(ValueError, match=r"`embeddings` must be a \[num_classes, dim\] matrix, got "
                                       r"shape \(0, 3\)"):
    losses.embedding_similarity(np.zeros((0, 3)), 0.0)  # no classes


def test_validate_accepts_an_integer_or_float_0_1_mask_and_nothing_else():
  z, y = np.zeros((3, 4)), np.array([0, 1, 3])
  for w in (np.array([1, 0, 1]), np.array([1.0, 1.0, 0.0]), np.array([True, False, True])):
    losses.validate(logits=z, labels=y, where=w)
  for w, shown in ((np.array([0, 2, 0]), r"\[0, 2\]"), (np.array([0.5, 1.0, 1.0]), r"\[0.5, 1.0\]"),
                   (np.array([-1, 1, 1]), r"\[-1, 1\]")):
    with pytest.raises(ValueError, match=r"`where` must be a boolean \(or 0/1\) mask, got values "
                                         + shown):
      losses.validate(logits=z, labels=y, where=w)


def test_cross_entropy_with_targets_ignores_classes_of_zero_target_at_minus_infinity():
  """A class ruled out by a -inf logit (log p = -inf) with target 0 adds 0, not 0 * -inf = NaN;
  against numpy's log-softmax over the finite logits."""
  z = np.array([[0.0, -np.inf, 1.0, 2.0], [3.0, 0.5, -np.inf, -np.inf]], np.float32)
  t = np.array([[0.25, 0.0, 0.25, 0.5], [0.5, 0.5, 0.0, 0.0]], np.float32)
  out = np.asarray(losses.softmax_cross_entropy_with_targets(z, t))
  zf = z.astype(np.float64)
  lse = np.log(np.sum(np.exp(np.where(np.isfinite(zf), zf, -1e300)), axis=-1, keepdims=True))
  want = -np.sum(np.where(t > 0, t * (np.where(np.isfinite(zf), zf, 0.0) - lse), 0.0), axis=-1)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, want, rtol=1e-6)


def test_validate_targets_tolerance_and_zeros():
  atol = 1e-3
  losses.validate(targets=np.eye(3))                                     # zeros are fine
  losses.validate(targets=np.array([[1.0 + atol, -atol, 0.0]]), atol=atol)  # boundary: inclusive
  with pytest.raises(ValueError, match=r"`targets` must be non-negative probabilities, got "
                                       r"targets\[0, 1\]"):
    losses.validate(targets=np.array([[1.0 + 2 * atol, -2 * atol, 0.0]]), atol=atol)


def test_validate_infers_the_class_count_from_the_last_axis():
  losses.validate(logits=np.zeros(3), labels=np.array(2))       # one example, [C] logits
  losses.validate(logits=np.zeros((2, 3, 5)), labels=np.array([[4, 0, 1], [2, 3, 4]]))
  with pytest.raises(ValueError, match=r"\[0, 5\)"):
    losses.validate(logits=np.zeros((2, 3, 5)), labels=np.array([[5, 0, 1], [2, 3, 4]]))
  losses.validate(targets=np.full((2, 4), 0.25), labels=np.array([3, 0]))


def test_deadlock_check_boundary_and_message():
  """Rows within ``atol`` (inclusive) of the first are a deadlock; the message gives the deviation."""
  same = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
  with pytest.raises(ValueError, match=r"max deviation 0 <= atol=0.25"):
    losses.check_not_deadlocked(same, atol=0.25)
  with pytest.raises(ValueError, match=r"max deviation 0.25 <= atol=0.25"):
    losses.check_not_deadlocked(np.array([[0.5, 0.5], [0.75, 0.25]]), atol=0.25)
  losses.check_not_deadlocked(np.array([[0.5, 0.5], [0.875, 0.125]]), atol=0.25)
  losses.check_not_deadlocked(np.array([[0.5, 0.5]]), atol=0.25)  # one row: nothing to compare


def test_fierce_entropy_default_temperature_is_one():
  """The temperature only shapes the straight-through gradient; the default is 1."""
  import jax
  import jax.numpy as jnp
  rng = np.random.RandomState(0)
  f, c, key = jnp.asarray(rng.randn(16, 4)), jnp.asarray(rng.randn(8, 4)), jax.random.PRNGKey(0)
  grad = lambda **kw: jax.grad(lambda x: losses.fierce_entropy(x, c, key, **kw))(f)  # noqa: E731
  np.testing.assert_allclose(grad(), grad(temperature=1.0), rtol=1e-6)
  assert not np.allclose(grad(), grad(temperature=2.0), rtol=1e-3)


def test_expected_positive_regularizer_with_every_example_masked():
  """No unmasked example: the mean count of positives is 0 (not 0/0), the penalty (k / C)^2."""
  logits = np.zeros((3, 5), np.float32)
  got = losses.expected_positive_regularizer(logits, k=2.0, where=np.zeros(3, bool))
  np.testing.assert_allclose(np.asarray(got), (2.0 / 5) ** 2, rtol=1e-6)


def test_actdiff_gradient_is_finite_at_zero_distance():
  """Identical features (distance 0): the penalty is 0 and its gradient 0, not NaN (sqrt at 0)."""
  import jax
  import jax.numpy as jnp
  f = jnp.asarray(np.random.RandomState(0).randn(4, 3), jnp.float32)
  value, grad = jax.value_and_grad(lambda x: jnp.sum(losses.actdiff_penalty(x, f)))(f)
  assert float(value) == 0.0
  np.testing.assert_array_equal(np.asarray(grad), np.zeros((4, 3), np.float32))


def test_check_simplex_default_tolerance_is_1e_4():
  """Rows off 1 by 5e-5 pass the default tolerance, by 2e-4 they do not (hand numbers); a
  negative entry beyond it is refused too. (Killed mutant: the default ``atol=1e-4`` -> 1.0001.)"""
  from labelwise.losses import host_checks
  host_checks.check_simplex(np.array([[0.5, 0.5 + 5e-5], [1.0, 0.0]]))
  with pytest.raises(ValueError, match=r"rows must sum to 1.*row \[0\]"):
    host_checks.check_simplex(np.array([[0.5, 0.5 + 2e-4], [1.0, 0.0]]))
  with pytest.raises(ValueError, match="must be non-negative"):
    host_checks.check_simplex(np.array([[1.0 + 2e-4, -2e-4]]))


def test_check_finite_reads_values_at_their_own_precision():
  """float64 values are checked as float64 (1e300 is finite; only bfloat16 is widened to float32
  to be tested), bfloat16 and float16 infinities are found. (Killed mutants: the bfloat16 test
  ``==`` -> ``!=`` and ``not ==``, which cast every other dtype to float32 and so turned 1e300
  into inf.)"""
  import ml_dtypes
  from labelwise.losses import host_checks
  host_checks.check_finite(np.array([1.0, 1e300]), "x")
  with pytest.raises(ValueError, match=r"`x` must be finite, got 1 NaN/inf entries of 2 "
                                       r"\(first: x\[1\] = inf\)"):
    host_checks.check_finite(np.array([1.0, np.inf]), "x")
  for dtype in (ml_dtypes.bfloat16, np.float16):
    with pytest.raises(ValueError, match=r"got 2 NaN/inf entries of 3 \(first: x\[0\]"):
      host_checks.check_finite(np.array([np.inf, 1.0, np.nan]).astype(dtype), "x")
    host_checks.check_finite(np.array([3.0, 1.0]).astype(dtype), "x")


def test_validate_where_may_broadcast_over_the_batch_shape():
  """A ``where`` of shape [batch, 1] for [batch, time] logits broadcasts and is accepted; one whose
  dims are neither 1 nor the batch's is refused, naming it. (Killed mutant: the broadcast test
  compared ``where``'s dims with the reference's name instead of its batch shape.)"""
  z = np.zeros((2, 3, 5), np.float32)
  y = np.zeros((2, 3), np.int32)
  losses.validate(logits=z, labels=y, where=np.ones((2, 1)))
  losses.validate(logits=z, labels=y, where=np.ones((1, 3)))
  losses.validate(logits=z, labels=y, where=np.ones((2, 3)))
  with pytest.raises(ValueError, match=r"`where` must have the batch shape \(2, 3\) of `logits`, "
                                       r"got shape \(3, 1\)"):
    losses.validate(logits=z, labels=y, where=np.ones((3, 1)))
