"""Run as a subprocess by tests/test_packaging.py: the base install (jax + numpy) is enough for the losses.

A meta-path finder refuses every package of the extras (flax, optax, orbax, TFDS, absl,
ml_collections, matplotlib, scikit-learn, scipy), as if only ``pip install labelwise`` had run. Then
every public function of ``labelwise.losses`` is called under ``jax.jit``, and each loss is also
differentiated; importing the trainer must fail with a message naming ``labelwise[train]``.
Prints ``OK <number of functions>`` on success.
"""

import importlib
import importlib.abc
import sys

BLOCKED = ("flax", "optax", "orbax", "tensorflow_datasets", "tensorflow", "absl", "ml_collections",
           "matplotlib", "sklearn", "scipy", "chex", "tqdm")


class _Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):
    if fullname.split(".")[0] in BLOCKED:
      raise ModuleNotFoundError(f"blocked for this check: {fullname}", name=fullname)
    return None


sys.meta_path.insert(0, _Refuse())

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import labelwise  # noqa: E402
from labelwise import losses  # noqa: E402

B, C, D = 8, 4, 3
k0, k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 4)
z = jax.random.normal(k0, (B, C))
z2 = jax.random.normal(k1, (B, C))
y = jnp.arange(B) % C
t = jax.nn.softmax(z2)
p = jax.nn.softmax(z)
feats = jax.random.normal(k2, (B, D))
codes = losses.fierce_codes(k3, 16, D)
S = jnp.asarray(losses.ordinal_similarity(C, reduction_factor=0.5))
f2c = np.array([0, 0, 1, 1])
images = jax.random.normal(k1, (B, 5, 5))
masks = jnp.zeros((B, 5, 5)).at[:, 1:4, 1:4].set(1.0)
w_img = 0.1 * jax.random.normal(k2, (25, C))


def _score(im):
  logits = im.reshape(im.shape[0], -1) @ w_img
  return losses.gradmask_score(logits, y)


# name -> (kind, function of the first array, the first array). "grad": jit(grad(sum of outputs));
# "jit": jit only (EM solvers, integer outputs, samplers); "host": host-side builders and validators.
CASES = {
    "softmax_cross_entropy": ("grad", lambda a: losses.softmax_cross_entropy(a, y), z),
    "softmax_cross_entropy_with_targets": ("grad", lambda a: losses.softmax_cross_entropy_with_targets(a, t), z),
    "label_smoothing_cross_entropy": ("grad", lambda a: losses.label_smoothing_cross_entropy(a, y, alpha=0.1), z),
    "simloss": ("grad", lambda a: losses.simloss(a, y, S), z),
    "simloss_with_targets": ("grad", lambda a: losses.simloss_with_targets(a, t, S), z),
    "collision_cross_entropy": ("grad", lambda a: losses.collision_cross_entropy(a, t), z),
    "collision_cross_entropy_with_logits": ("grad", lambda a: losses.collision_cross_entropy_with_logits(a, z2), z),
    "self_labeling_objective": ("grad", lambda a: losses.self_labeling_objective(jax.nn.softmax(a), t), z),
    "mutual_information_loss": ("grad", lambda a: losses.mutual_information_loss(a), z),
    "simplex_projection": ("grad", lambda a: losses.simplex_projection(a), z),
    "collision_pseudo_labels": ("jit", lambda a: losses.collision_pseudo_labels(a), p),
    "shannon_pseudo_labels": ("jit", lambda a: losses.shannon_pseudo_labels(a), p),
    "pgd_pseudo_labels": ("jit", lambda a: losses.pgd_pseudo_labels(a, step_size=0.1), p),
    "two_head_loss": ("grad", lambda a: losses.two_head_loss(a, z2, y, k=2.0), z),
    "assume_negative_loss": ("grad", lambda a: losses.assume_negative_loss(a, y), z),
    "expected_positive_regularizer": ("grad", lambda a: losses.expected_positive_regularizer(a, k=2.0), z),
    "mean_binary_cross_entropy": ("grad", lambda a: losses.mean_binary_cross_entropy(a, (t > 0.25).astype(jnp.float32)), z),
    "average_k_pseudo_labels": ("jit", lambda a: losses.average_k_pseudo_labels(a, y, k=2.0), p),
    "fierce_codes": ("jit", lambda key: losses.fierce_codes(key, 16, D), k3),
    "fierce_entropy": ("grad", lambda a: losses.fierce_entropy(a, codes, k0), feats),
    "fierce_loss": ("grad", lambda a: losses.fierce_loss(z, y, a, codes, k0, lam=1.0), feats),
    "fierce_objective": ("grad", lambda a: losses.fierce_objective(a, 2.0 * jnp.mean(a), lam=0.5), z[:, 0]),
    "koleo_entropy": ("grad", lambda a: losses.koleo_entropy(a), feats),
    "actdiff_penalty": ("grad", lambda a: losses.actdiff_penalty(a, feats[::-1]), feats),
    "gradmask_penalty": ("grad", lambda a: losses.gradmask_penalty(a, masks), images),
    "rrr_penalty": ("grad", lambda a: losses.rrr_penalty(a, masks), images),
    "gradmask_score": ("grad", lambda a: losses.gradmask_score(a, y), z),
    "rrr_score": ("grad", lambda a: losses.rrr_score(a), z),
    "input_gradients": ("grad", lambda a: losses.input_gradients(_score, a), images),
    "mask_weights": ("jit", lambda a: losses.mask_weights(a), masks),
    "reduce_masked_penalty": ("grad", lambda a: losses.reduce_masked_penalty(a, losses.mask_weights(masks)), z[:, 0]),
    "shuffle_outside_mask": ("jit", lambda key: losses.shuffle_outside_mask(key, images, masks), k1),
    "smoothed_targets": ("jit", lambda a: losses.smoothed_targets(a, C, alpha=0.1), y),
    "sord_targets": ("jit", lambda a: losses.sord_targets(a, C, scale=1.0), y),
    "hierarchical_targets": ("host", lambda a: losses.hierarchical_targets(a, f2c, beta=1.0), np.asarray(y)),
    "ordinal_similarity": ("host", lambda n: losses.ordinal_similarity(n, reduction_factor=0.5), C),
    "superclass_similarity": ("host", lambda a: losses.superclass_similarity(a, 0.5), f2c),
    "embedding_similarity": ("host", lambda a: losses.embedding_similarity(a, 0.0), np.asarray(feats)),
    "validate_similarity": ("host", lambda a: losses.validate_similarity(a, C), np.asarray(S)),
    "validate_masks": ("host", lambda a: losses.validate_masks(a), np.asarray(masks)),
    "validate": ("host", lambda a: losses.validate(logits=a, labels=np.asarray(y)), np.asarray(z)),
    "check_not_deadlocked": ("host", lambda a: losses.check_not_deadlocked(a), np.asarray(p)),
    "num_pseudo_positives": ("host", lambda k: losses.num_pseudo_positives(k, B, C), 2.0),
}


def _weighted_sum(x):
  """A fixed, uneven weighting, so that outputs with a constant sum (a simplex) still have a gradient."""
  return jnp.sum(x * jnp.cos(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape))


def _finite(tree):
  for leaf in jax.tree_util.tree_leaves(tree):
    leaf = np.asarray(leaf)
    if leaf.dtype.kind == "f" and not np.isfinite(leaf).all():
      raise AssertionError("non-finite output")


def main():
  public = sorted(n for n in dir(losses) if not n.startswith("_") and callable(getattr(losses, n))
                  and not isinstance(getattr(losses, n), type))
  missing = sorted(set(public) - set(CASES))
  if missing:
    raise AssertionError(f"public functions of labelwise.losses without a case here: {missing}")
  for name, (kind, fn, arg) in CASES.items():
    try:
      if kind == "grad":
        total = lambda a, fn=fn: sum(_weighted_sum(leaf) for leaf in jax.tree_util.tree_leaves(fn(a)))
        g = jax.jit(jax.grad(total))(arg)
        _finite(g)
        if not float(jnp.abs(g).sum()) > 0:
          raise AssertionError("zero gradient")
      elif kind == "jit":
        _finite(jax.jit(fn)(arg))
      else:
        fn(arg)
    except Exception as e:
      raise AssertionError(f"labelwise.losses.{name} ({kind}) failed: {type(e).__name__}: {e}") from e
  leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
  if leaked:
    raise AssertionError(f"blocked modules were imported: {leaked}")
  try:
    importlib.import_module("labelwise.train.trainer")
  except ImportError as e:
    if "labelwise[train]" not in str(e):
      raise AssertionError(f"importing the trainer failed without naming labelwise[train]: {e}") from e
    print("trainer:", e)
  else:
    raise AssertionError("labelwise.train.trainer imported although its extras are blocked")
  print("OK", len(CASES), labelwise.__version__)


if __name__ == "__main__":
  main()
