"""Bad input to the public loss, metric and config API raises a clear error, never a silent NaN.

One table: each row calls one public function with one thing wrong and states the exception type and
a pattern that the message must match: the argument's name, what it got, and what was expected.
Values (NaN/inf, labels out of range, off-simplex targets) are checked on the host, by
``labelwise.losses.validate`` for losses; the metric functions check label ranges themselves.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise import losses
from labelwise.eval import metrics
from labelwise.train import trainer
from tests.helpers import load_config

simloss_mod = sys.modules["labelwise.losses.simloss"]

B, C = 3, 5
Z = np.linspace(-1.0, 1.0, B * C, dtype=np.float32).reshape(B, C)  # logits
Y = np.array([0, 4, 2], np.int32)                                    # labels
T = np.full((B, C), 1.0 / C, np.float32)                             # probability targets
W = np.ones(B, bool)                                                 # where
S = np.eye(C, dtype=np.float32)                                      # similarity
F = np.linspace(-1.0, 1.0, B * 4, dtype=np.float32).reshape(B, 4)    # features
KEY = jax.random.PRNGKey(0)
CODES = np.asarray(losses.fierce_codes(KEY, 6, 4))                   # FIERCE codebook [6, 4]
IMG = np.zeros((B, 4, 4, 1), np.float32)                             # images / input gradients
MASK = np.zeros((B, 4, 4, 1), np.float32)                            # attribution masks


def nan_at(a, idx, value=np.nan):
  a = np.array(a, copy=True)
  a[idx] = value
  return a


def _config(**kw):
  return load_config("digits_ce", "runlocal", **kw)


def _jit_validate():
  jax.jit(lambda z: losses.validate(logits=z) or z)(Z)


CASES = [
    # --- softmax cross-entropy (integer labels): static checks at trace time --------------------
    ("sce/logits rank 0", lambda: losses.softmax_cross_entropy(Z[0, 0], Y[0]),
     ValueError, r"`logits` must have a class axis \(\[\.\.\., num_classes\]\), got shape \(\)"),
    ("sce/one example, labels [1]", lambda: losses.softmax_cross_entropy(Z[0], Y[:1]),
     ValueError, r"`labels` must have shape \[\], got \(1,\)"),  # [C] logits: a scalar label
    ("sce/leading dims mismatch", lambda: losses.softmax_cross_entropy(Z[None], Y),
     ValueError, r"`labels` must have shape \[1, 3\], got \(3,\)"),
    ("sce/axis out of range", lambda: losses.softmax_cross_entropy(Z, Y, axis=2),
     ValueError, r"`axis` must be in \[-2, 2\) for `logits` of shape \(3, 5\), got 2"),
    ("sce/integer logits", lambda: losses.softmax_cross_entropy(Z.astype(np.int32), Y),
     TypeError, r"`logits` must be a floating array, got dtype int32"),
    ("sce/float labels", lambda: losses.softmax_cross_entropy(Z, Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("sce/one-hot labels", lambda: losses.softmax_cross_entropy(Z, np.eye(C, dtype=np.int32)[Y]),
     ValueError, r"`labels` must have shape \[3\], got \(3, 5\)"),
    ("sce/batch mismatch", lambda: losses.softmax_cross_entropy(Z, np.zeros(4, np.int32)),
     ValueError, r"`labels` must have shape \[3\], got \(4,\)"),
    ("sce/empty batch", lambda: losses.softmax_cross_entropy(Z[:0], Y[:0]),
     ValueError, r"`logits` must not be empty .*got shape \(0, 5\)"),
    ("sce/no classes", lambda: losses.softmax_cross_entropy(Z[:, :0], Y),
     ValueError, r"`logits` must not be empty .*got shape \(3, 0\)"),
    ("sce/where shape", lambda: losses.softmax_cross_entropy(Z, Y, where=W[:2]),
     ValueError, r"`where` must have shape \[3\], got \(2,\)"),
    ("sce/jit batch mismatch", lambda: jax.jit(losses.softmax_cross_entropy)(Z, Y[:2]),
     ValueError, r"`labels` must have shape \[3\], got \(2,\)"),
    # --- softmax cross-entropy with probability targets ----------------------------------------
    ("sce_t/targets shape", lambda: losses.softmax_cross_entropy_with_targets(Z, T[:, :4]),
     ValueError, r"`targets` must have shape \[3, 5\], got \(3, 4\)"),
    ("sce_t/integer targets", lambda: losses.softmax_cross_entropy_with_targets(
        Z, np.eye(C, dtype=np.int32)[Y]),
     TypeError, r"`targets` must be a floating array, got dtype int32"),
    ("sce_t/labels as targets", lambda: losses.softmax_cross_entropy_with_targets(Z, Y),
     TypeError, r"`targets` must be a floating array, got dtype int32"),
    ("sce_t/empty batch", lambda: losses.softmax_cross_entropy_with_targets(Z[:0], T[:0]),
     ValueError, r"`logits` must not be empty .*got shape \(0, 5\)"),
    ("sce_t/where shape", lambda: losses.softmax_cross_entropy_with_targets(Z, T, where=W[None]),
     ValueError, r"`where` must have shape \[3\], got \(1, 3\)"),
    # --- host-side value checks: labelwise.losses.validate --------------------------------------
    ("validate/NaN logits", lambda: losses.validate(logits=nan_at(Z, (1, 2)), labels=Y),
     ValueError, r"`logits` must be finite, got 1 NaN/inf entries of 15 \(first: logits\[1, 2\] = nan"),
    ("validate/inf logits", lambda: losses.validate(logits=nan_at(Z, (0, 0), np.inf)),
     ValueError, r"`logits` must be finite, .*logits\[0, 0\] = inf"),
    ("validate/label = C", lambda: losses.validate(logits=Z, labels=nan_at(Y, 1, C)),
     ValueError, r"`labels` must be class indices in \[0, 5\), got labels\[1\] = 5"),
    ("validate/negative label", lambda: losses.validate(logits=Z, labels=nan_at(Y, 2, -1)),
     ValueError, r"`labels` must be class indices in \[0, 5\), got labels\[2\] = -1"),
    ("validate/float labels", lambda: losses.validate(logits=Z, labels=Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("validate/labels without C", lambda: losses.validate(labels=Y),
     ValueError, r"`labels` needs `num_classes`"),
    ("validate/targets sum", lambda: losses.validate(targets=T * 2),
     ValueError, r"`targets` rows must sum to 1 \(probability targets\), got sum 2 in row \[0\]"),
    ("validate/negative targets", lambda: losses.validate(
        targets=nan_at(nan_at(T, (2, 0), -0.2), (2, 1), 0.6)),
     ValueError, r"`targets` must be non-negative probabilities, got targets\[2, 0\] = -0.2"),
    ("validate/NaN targets", lambda: losses.validate(targets=nan_at(T, (0, 3))),
     ValueError, r"`targets` must be finite, .*targets\[0, 3\] = nan"),
    ("validate/NaN extra array", lambda: losses.validate(probs=nan_at(T, (1, 1))),
     ValueError, r"`probs` must be finite, .*probs\[1, 1\] = nan"),
    ("validate/where values", lambda: losses.validate(logits=Z, where=np.array([0, 2, 1])),
     ValueError, r"`where` must be a boolean \(or 0/1\) mask, got values \[0, 1, 2\]"),
    ("validate/similarity diagonal", lambda: losses.validate(
        logits=Z, similarity=0.5 * np.ones((C, C), np.float32)),
     ValueError, r"`similarity` must have a diagonal of 1 .*got similarity\[0, 0\] = 0.5"),
    ("validate/similarity size", lambda: losses.validate(logits=Z, similarity=np.eye(4)),
     ValueError, r"`similarity` must have shape \[5, 5\] \(num_classes=5\), got \(4, 4\)"),
    ("validate/under jit", _jit_validate,
     TypeError, r"`logits` is a traced value; validate\(\) runs on the host"),
    # --- eval.metrics (host functions: values checked when concrete) ----------------------------
    ("accuracy/float labels", lambda: metrics.accuracy(Z, Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("accuracy/batch mismatch", lambda: metrics.accuracy(Z, Y[:2]),
     ValueError, r"`labels` must have shape \[3\], got \(2,\)"),
    ("accuracy/label out of range", lambda: metrics.accuracy(Z, nan_at(Y, 0, 7)),
     ValueError, r"`labels` must be class indices in \[0, 5\), got labels\[0\] = 7"),
    ("accuracy/scalar logits", lambda: metrics.accuracy(np.float32(1.0), Y),
     ValueError, r"`logits` must have a class axis \[\.\.\., num_classes\], got shape \(\)"),
    ("accuracy/empty", lambda: metrics.accuracy(Z[:0], Y[:0]),
     ValueError, r"`logits` must not be empty .*got shape \(0, 5\)"),
    ("top_k/k = 0", lambda: metrics.top_k_accuracy(Z, Y, k=0),
     ValueError, r"`k` must be in \[1, 5\], got 0"),
    ("top_k/k > C", lambda: metrics.top_k_accuracy(Z, Y, k=6),
     ValueError, r"`k` must be in \[1, 5\], got 6"),
    ("top_k/label out of range", lambda: metrics.top_k_accuracy(Z, nan_at(Y, 1, -3), k=2),
     ValueError, r"`labels` must be class indices in \[0, 5\), got labels\[1\] = -3"),
    ("cross_entropy/integer logits", lambda: metrics.cross_entropy(Z.astype(np.int64), Y),
     TypeError, r"`logits` must be a floating array, got dtype int"),
    ("masked_mean/where shape", lambda: metrics.masked_mean(np.ones(3), np.ones(4)),
     ValueError, r"`where` must have the shape of `values` \(3,\), got \(4,\)"),
    # --- method losses (SimLoss, average-K, collision, FIERCE, attribution) ---------------------
    ("simloss/similarity size", lambda: losses.simloss(Z, Y, np.eye(4, dtype=np.float32)),
     ValueError, r"`similarity` must have shape \[num_classes, num_classes\] = \[5, 5\] .*"
                 r"got `similarity` of shape \(4, 4\)"),
    ("simloss/epsilon < 0", lambda: losses.simloss(Z, Y, S, epsilon=-1.0),
     ValueError, r"`epsilon` must be None or a finite number >= 0, got -1.0"),
    ("simloss/float labels", lambda: losses.simloss(Z, Y.astype(np.float32), S),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("simloss/integer similarity", lambda: losses.simloss(Z, Y, np.eye(C, dtype=np.int32)),
     TypeError, r"`similarity` must be a floating array, got dtype int32"),
    ("simloss/empty batch", lambda: losses.simloss(Z[:0], Y[:0], S),
     ValueError, r"`logits` must not be empty .*got shape \(0, 5\)"),
    ("simloss_t/targets shape", lambda: losses.simloss_with_targets(Z, T[:, :4], S),
     ValueError, r"`targets` must have shape \[3, 5\], got \(3, 4\)"),
    ("validate_similarity/entry > 1", lambda: losses.validate_similarity(2 * np.eye(C)),
     ValueError, r"`similarity` entries must be in \[0, 1\], got similarity\[0, 0\] = 2.0"),
    ("validate_similarity/NaN", lambda: losses.validate_similarity(
        np.where(np.eye(C) > 0, 1.0, np.nan)),
     ValueError, r"`similarity` must be finite, got similarity\[0, 1\] = nan"),
    ("ordinal_similarity/r >= 1", lambda: losses.ordinal_similarity(C, 1.5),
     ValueError, r"`reduction_factor` .* must be in \[0, 1\), got 1.5"),
    ("superclass_similarity/negative id", lambda: losses.superclass_similarity(
        np.array([0, 1, -1]), 0.5),
     ValueError, r"`fine_to_coarse` must hold superclass ids >= 0, got min -1"),
    ("label_smoothing/alpha > 1", lambda: losses.label_smoothing_cross_entropy(Z, Y, alpha=1.5),
     ValueError, r"`alpha` must be a scalar in \[0, 1\], got 1.5"),
    ("sord_targets/scale 0", lambda: losses.sord_targets(Y, C, scale=0.0),
     ValueError, r"`scale` must be a finite scalar > 0, got 0.0"),
    ("hierarchical_targets/beta < 0", lambda: losses.hierarchical_targets(
        Y, np.array([0, 0, 1, 1, 1]), beta=-1.0),
     ValueError, r"`beta` must be a finite scalar >= 0, got -1.0"),
    ("two_head/k = 0", lambda: losses.two_head_loss(Z, Z, Y, k=0.0),
     ValueError, r"`k` \(the average set size\) must be in \(0, num_classes\] = \(0, 5\], got 0.0"),
    ("two_head/k > C", lambda: losses.two_head_loss(Z, Z, Y, k=6.0),
     ValueError, r"`k` .* must be in \(0, num_classes\] = \(0, 5\], got 6.0"),
    ("two_head/heads differ", lambda: losses.two_head_loss(Z, Z[:, :4], Y, k=2.0),
     ValueError, r"`multilabel_logits` must have shape \[3, 5\], got \(3, 4\)"),
    ("two_head/weight < 0", lambda: losses.two_head_loss(Z, Z, Y, k=2.0, weight=-1.0),
     ValueError, r"`weight` must be >= 0, got -1.0"),
    ("two_head/empty batch", lambda: losses.two_head_loss(Z[:0], Z[:0], Y[:0], k=2.0),
     ValueError, r"`softmax_logits` must not be empty .*got shape \(0, 5\)"),
    ("expected_positive/empty batch", lambda: losses.expected_positive_regularizer(Z[:0], k=2.0),
     ValueError, r"`multilabel_logits` must not be empty .*got shape \(0, 5\)"),
    ("mean_bce/targets batch", lambda: losses.mean_binary_cross_entropy(Z, T[:2]),
     ValueError, r"`targets` must have shape \[3, 5\], got \(2, 5\)"),
    ("average_k_pseudo_labels/rank", lambda: losses.average_k_pseudo_labels(T[0], Y, k=2.0),
     ValueError, r"`probs` must have rank 2 \(\[batch, num_classes\]\), got shape \(5,\)"),
    ("num_pseudo_positives/k unreachable", lambda: losses.num_pseudo_positives(0.5, 3, 5),
     ValueError, r"`k`=0.5 with include_true=True is not reachable"),
    ("collision_ce/targets shape", lambda: losses.collision_cross_entropy(Z, T[:, :4]),
     ValueError, r"`targets` must have shape \[3, 5\], got \(3, 4\)"),
    ("collision_ce_logits/batch", lambda: losses.collision_cross_entropy_with_logits(Z, Z[:2]),
     ValueError, r"`target_logits` must have shape \[3, 5\], got \(2, 5\)"),
    ("collision_pseudo/fairness", lambda: losses.collision_pseudo_labels(T, fairness="bogus"),
     ValueError, r"`fairness` must be one of \('strong', 'classic'\), got 'bogus'"),
    ("collision_pseudo/weight < 0", lambda: losses.collision_pseudo_labels(T, fairness_weight=-1.0),
     ValueError, r"`fairness_weight` must be a finite number >= 0, got -1.0"),
    ("collision_pseudo/empty batch", lambda: losses.collision_pseudo_labels(T[:0]),
     ValueError, r"`probs` must not be empty .*got shape \(0, 5\)"),
    ("pgd_pseudo/step_size", lambda: losses.pgd_pseudo_labels(T, step_size=-1.0),
     ValueError, r"`step_size` must be a finite number > 0, got -1.0"),
    ("self_labeling/pseudo off simplex", lambda: losses.self_labeling_objective(T, T[:, :4]),
     ValueError, r"`pseudo_labels` must be probabilities on the simplex .*got a row sum of 0.8"),
    ("mutual_information/empty batch", lambda: losses.mutual_information_loss(Z[:0]),
     ValueError, r"`logits` must not be empty .*got shape \(0, 5\)"),
    ("check_not_deadlocked/identical", lambda: losses.check_not_deadlocked(
        np.tile(np.eye(C, dtype=np.float32)[0], (B, 1))),
     ValueError, r"deadlock: all predictions in the batch are identical"),
    ("fierce_loss/lam < 0", lambda: losses.fierce_loss(Z, Y, F, CODES, KEY, lam=-1.0),
     ValueError, r"`lam` must be >= 0, got -1.0"),
    ("fierce_loss/form", lambda: losses.fierce_loss(Z, Y, F, CODES, KEY, form="bogus"),
     ValueError, r"`form` must be one of \('difference', 'convex'\), got 'bogus'"),
    ("fierce_loss/features batch", lambda: losses.fierce_loss(Z, Y, F[:2], CODES, KEY),
     ValueError, r"`features` must have batch size 3 \(as `logits`\), got shape \(2, 4\)"),
    ("fierce_entropy/codes dim", lambda: losses.fierce_entropy(F, CODES[:, :3], KEY),
     ValueError, r"`codes` must have shape \[num_codes, 4\] to match `features` \(3, 4\), got "
                 r"\(6, 3\)"),
    ("fierce_entropy/temperature 0", lambda: losses.fierce_entropy(F, CODES, KEY, temperature=0.0),
     ValueError, r"`temperature` must be > 0, got 0.0"),
    ("fierce_entropy/empty batch", lambda: losses.fierce_entropy(F[:0], CODES, KEY),
     ValueError, r"`features` must not be empty .*got shape \(0, 4\)"),
    ("fierce_codes/num_codes 0", lambda: losses.fierce_codes(KEY, 0, 4),
     ValueError, r"`num_codes` must be a positive int, got 0"),
    ("koleo/empty batch", lambda: losses.koleo_entropy(F[:0]),
     ValueError, r"`features` must not be empty .*got shape \(0, 4\)"),
    ("gradmask/masks shape", lambda: losses.gradmask_penalty(IMG, MASK[:, :3]),
     ValueError, r"`masks` must have shape \[3, 4, 4\] or \[3, 4, 4, 1\] to match `input_grads` "
                 r"of shape \(3, 4, 4, 1\), got \(3, 3, 4, 1\)"),
    ("gradmask/empty batch", lambda: losses.gradmask_penalty(IMG[:0], MASK[:0]),
     ValueError, r"`input_grads` must not be empty .*got shape \(0, 4, 4, 1\)"),
    ("rrr/masks batch", lambda: losses.rrr_penalty(IMG, MASK[:2]),
     ValueError, r"`masks` must have shape .* got \(2, 4, 4, 1\)"),
    ("actdiff/shapes differ", lambda: losses.actdiff_penalty(F, F[:, :3]),
     ValueError, r"`shuffled_features` must have shape \[3, 4\], got \(3, 3\)"),
    ("actdiff/empty batch", lambda: losses.actdiff_penalty(F[:0], F[:0]),
     ValueError, r"`features` must not be empty .*got shape \(0, 4\)"),
    ("validate_masks/not binary", lambda: losses.validate_masks(MASK + 2),
     ValueError, r"`masks` must be binary \(0 outside, 1 inside the region of interest\), got "
                 r"values \[2.0\]"),
    ("validate_masks/NaN", lambda: losses.validate_masks(MASK + np.nan),
     ValueError, r"`masks` must be binary .*got values \[nan\]"),
    ("reduce_masked_penalty/normalization", lambda: losses.reduce_masked_penalty(
        np.ones(3), np.ones(3), normalization="bogus"),
     ValueError, r"`normalization` must be one of \('per_masked_example', 'per_example', 'sum'\), "
                 r"got 'bogus'"),
    ("shuffle_outside_mask/masks shape", lambda: losses.shuffle_outside_mask(KEY, IMG, MASK[:, :2]),
     ValueError, r"`masks` must have shape \[3, 4, 4\] or \[3, 4, 4, 1\] to match `images` .*"
                 r"got \(3, 2, 4, 1\)"),
    ("mask_weights/where shape", lambda: losses.mask_weights(MASK, where=W[:2]),
     ValueError, r"`where` must have shape \[3\], got \(2,\)"),
    ("gradmask_score/float labels", lambda: losses.gradmask_score(Z, Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("rrr_score/rank 1", lambda: losses.rrr_score(Z[0]),
     ValueError, r"`logits` must have rank 2 \(\[batch, num_classes\]\), got shape \(5,\)"),
    ("assume_negative/float labels", lambda: losses.assume_negative_loss(Z, Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("expected_positive/rank 1", lambda: losses.expected_positive_regularizer(Z[0], k=2.0),
     ValueError, r"`multilabel_logits` must have rank 2 .*got shape \(5,\)"),
    ("smoothed_targets/labels rank", lambda: losses.smoothed_targets(Y[None], C, alpha=0.1),
     ValueError, r"`labels` must have rank 1 \(\[batch\]\), got shape \(1, 3\)"),
    ("simplex_projection/scalar", lambda: losses.simplex_projection(np.float32(1.0)),
     ValueError, r"`v` must have rank >= 1 \(\[\.\.\., num_classes\]\), got shape \(\)"),
    ("fierce_codes/init", lambda: losses.fierce_codes(KEY, 4, 4, init="bogus"),
     ValueError, r"`init` must be one of \('uniform', 'positive', 'normal', 'bins'\), got 'bogus'"),
    ("fierce_entropy/similarity", lambda: losses.fierce_entropy(F, CODES, KEY, similarity="bogus"),
     ValueError, r"`similarity` must be one of \('cosine', 'dot', 'bins'\), got 'bogus'"),
    ("fierce_objective/form", lambda: losses.fierce_objective(1.0, 1.0, form="x"),
     ValueError, r"`form` must be one of \('difference', 'convex'\), got 'x'"),
    # --- topic metrics (eval.metrics re-exports) -----------------------------------------------
    ("average_k_threshold/k = 0", lambda: metrics.average_k_threshold(Z, k=0.0),
     ValueError, r"`k` must be in \(0, 5\], got 0.0"),
    ("top_k_set_accuracy/k > C", lambda: metrics.top_k_set_accuracy(Z, Y, k=9),
     ValueError, r"`k` must be an integer in \[1, 5\], got 9"),
    ("clustering_accuracy/shapes", lambda: metrics.clustering_accuracy(Y, Y[:2]),
     ValueError, r"`labels` and `clusters` must have the same shape, got \(3,\) and \(2,\)"),
    ("nmi/shapes", lambda: metrics.normalized_mutual_information(Y, Y[:2]),
     ValueError, r"`labels` and `clusters` must have the same shape, got \(3,\) and \(2,\)"),
    ("knn_accuracy/k = 0", lambda: metrics.knn_accuracy(Z, Y, Z, Y, k=0),
     ValueError, r"`k` must be in \[1, 3\] \(the training set size\), got 0"),
    ("spearman/lengths", lambda: metrics.spearman(np.ones(3), np.ones(4)),
     ValueError, r"`x` and `y` must have the same length, got 3 and 4"),
    ("roc_auc/shapes", lambda: metrics.roc_auc(np.ones(3), np.ones(4)),
     ValueError, r"`labels` must have the shape of `scores` \(3,\), got \(4,\)"),
    ("saliency_overlap/shapes", lambda: metrics.saliency_overlap(np.ones((2, 4, 4)),
                                                                np.ones((2, 3, 4))),
     ValueError, r"`masks` must have the shape of `saliency` \[B, H, W\] \(2, 4, 4\), got "
                 r"\(2, 3, 4\)"),
    ("topk_mask/fraction as k", lambda: metrics.topk_mask(np.ones((2, 4, 4)), 0.5),
     ValueError, r"`k` must hold whole pixel counts in \[0, 16\] \(H \* W\), got \[0.5\]"),
    ("topk_mask/k > H * W", lambda: metrics.topk_mask(np.ones((2, 4, 4)), np.array([3, 17])),
     ValueError, r"`k` must hold whole pixel counts in \[0, 16\] .*got \[3.0, 17.0\]"),
    ("ordinal_absolute_error/batch", lambda: metrics.ordinal_absolute_error(Z, Y[:2]),
     ValueError, r"`labels` must have shape \[3\], got \(2,\)"),
    ("ordinal_squared_error/float labels", lambda: metrics.ordinal_squared_error(
        Z, Y.astype(np.float32)),
     TypeError, r"`labels` must be an integer array of class indices, got dtype float32"),
    ("superclass_accuracy/short map", lambda: metrics.superclass_accuracy(Z, Y, np.array([0, 1])),
     ValueError, r"`fine_to_coarse` must have one superclass id per class, shape \(5,\), got "
                 r"\(2,\)"),
    # --- config layer: fails before reading data or compiling ----------------------------------
    ("config/total_steps 0", lambda: trainer.validate_config(_config(total_steps=0)),
     ValueError, r"`total_steps` must be >= 1, got 0"),
    ("config/batch_size 0", lambda: trainer.validate_config(_config(batch_size=0)),
     ValueError, r"`batch_size` must be >= 1, got 0"),
    ("config/unknown evaluator", lambda: trainer.validate_config(
        _config(evaluators=("classification", "acuracy"))),
     ValueError, r"acuracy.*classification"),
    ("config/unknown dataset", lambda: trainer.validate_config(_config(dataset="digitz")),
     ValueError, r"Unknown dataset 'digitz'; known datasets: \[.*'digits'"),
    ("config/unknown :arg token", lambda: load_config("digits_ce", "runloca"),
     ValueError, r"unknown config argument 'runloca' in 'runloca'; this config knows: model, "
                 r"runlocal, seed"),
    ("config/conv_impl", lambda: trainer.validate_config(_config(conv_impl="fast")),
     ValueError, r"`conv_impl` must be one of \['auto', 'xla', 'matmul', 'patches'\], got 'fast'"),
    # --- issue 16: the last bad inputs found by fuzzing -----------------------------------------
    ("validate/targets classes", lambda: losses.validate(logits=Z, targets=T[:, :4]),
     ValueError, r"`targets` must have the shape of `logits` \(3, 5\).*got \(3, 4\)"),
    ("validate/labels batch", lambda: losses.validate(logits=Z, labels=Y[:2]),
     ValueError, r"`labels` must have the batch shape \(3,\) of `logits`, got shape \(2,\)"),
    ("validate/where batch", lambda: losses.validate(logits=Z, where=W[:2]),
     ValueError, r"`where` must have the batch shape \(3,\) of `logits`, got shape \(2,\)"),
    ("validate/where vs labels", lambda: losses.validate(labels=Y, where=np.ones(4, bool),
                                                         num_classes=C),
     ValueError, r"`where` must have the batch shape \(3,\) of `labels`, got shape \(4,\)"),
    ("collision_pseudo/where keeps none", lambda: losses.collision_pseudo_labels(
        T, where=np.zeros(B, bool)),
     ValueError, r"`where` keeps no example \(all 3 entries are False\)"),
    ("shannon_pseudo/where keeps none", lambda: losses.shannon_pseudo_labels(
        T, where=np.zeros(B, bool)),
     ValueError, r"`where` keeps no example"),
    ("pgd_pseudo/where keeps none", lambda: losses.pgd_pseudo_labels(
        T, step_size=0.1, where=np.zeros(B, bool)),
     ValueError, r"`where` keeps no example"),
    ("pgd_pseudo/step_size inf", lambda: losses.pgd_pseudo_labels(T, step_size=np.inf),
     ValueError, r"`step_size` must be a finite number > 0, got inf"),
    ("shannon_pseudo/bisection_steps 0", lambda: losses.shannon_pseudo_labels(
        T, bisection_steps=0),
     ValueError, r"`bisection_steps` must be a Python int >= 1, got 0"),
    ("shannon_pseudo/bisection_steps -3", lambda: losses.shannon_pseudo_labels(
        T, bisection_steps=-3),
     ValueError, r"`bisection_steps` must be a Python int >= 1, got -3"),
    ("mutual_information/marginal_weight < 0", lambda: losses.mutual_information_loss(
        Z, marginal_weight=-1.0),
     ValueError, r"`marginal_weight` must be a finite number >= 0, got -1.0"),
    ("mutual_information/marginal_weight NaN", lambda: losses.mutual_information_loss(
        Z, marginal_weight=float("nan")),
     ValueError, r"`marginal_weight` must be a finite number >= 0, got nan"),
    ("fierce_objective/max_entropy < 0", lambda: losses.fierce_objective(
        np.zeros(B, np.float32), np.float32(1.0), form="convex", max_entropy=-1.0),
     ValueError, r"`max_entropy` .* must be a finite number >= 0, got -1.0"),
    ("smoothed_targets/0 classes", lambda: losses.smoothed_targets(Y, 0, alpha=0.1),
     ValueError, r"`num_classes` must be a Python int >= 1, got 0"),
    ("two_head_loss/k as a string", lambda: losses.two_head_loss(Z, Z, Y, k="2"),
     TypeError, r"`k` must be a number, got '2' \(str\)"),
    ("num_pseudo_positives/rounds to 0", lambda: losses.num_pseudo_positives(1.01, 10, 5),
     ValueError, r"`k`=1.01 with a batch of 10 gives \(k - 1\)\*B = 0.1, which rounds to 0 "
                 r"pseudo-positives"),
    ("input_gradients/scalar with has_aux", lambda: losses.input_gradients(
        lambda x: jnp.sum(x), IMG, has_aux=True),
     TypeError, r"`score_fn` must return a pair \(\[batch\] scores, aux\) with has_aux=True, "
                r"got an array of shape \(\)"),
    ("data/label out of range", lambda: _check_labels(np.array([0, 3, -1, 2])),
     ValueError, r"split 'train' of dataset 'digits' has 2 labels outside \[0, 3\) \(e.g. "
                 r"example 1: label 3\)"),
]


def _check_labels(labels):
  from labelwise.data.pipeline import check_labels
  check_labels(labels, 3, "split 'train' of dataset 'digits'")


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(call, exc, pattern):
  with pytest.raises(exc, match=pattern):
    call()


def test_table_is_large_and_ids_unique():
  ids = [c[0] for c in CASES]
  assert len(ids) == len(set(ids))
  assert len(ids) >= 40


def test_good_inputs_pass_the_same_checks():
  """The checks above reject only bad input: the unmodified arrays give finite, correct values."""
  losses.validate(logits=Z, labels=Y, targets=T, where=W, similarity=np.eye(C, dtype=np.float32))
  ref = -np.log(np.exp(Z) / np.exp(Z).sum(-1, keepdims=True))[np.arange(B), Y]
  np.testing.assert_allclose(losses.softmax_cross_entropy(Z, Y), ref, rtol=1e-6)
  np.testing.assert_allclose(metrics.cross_entropy(Z, Y), ref, rtol=1e-6)
  np.testing.assert_array_equal(metrics.accuracy(Z, Y), (Z.argmax(-1) == Y).astype(np.float32))
  trainer.validate_config(_config())
  # Traced calls skip the value checks (no host sync inside jit) but keep the shape checks.
  bad_label = nan_at(Y, 0, 7)
  np.testing.assert_array_equal(jax.jit(metrics.accuracy)(Z, bad_label)[1:],
                                (Z.argmax(-1) == Y)[1:].astype(np.float32))
  with pytest.raises(ValueError, match=r"`labels` must have shape \[3\], got \(2,\)"):
    jax.jit(metrics.accuracy)(Z, Y[:2])
  # A diverged model's metrics are reported, not refused: NaN logits give a NaN loss.
  assert np.isnan(metrics.cross_entropy(nan_at(Z, (0, 1)), Y)[0])


# --- issue 16: correct results where an error is not the answer ----------------------------------
def test_pseudo_labels_accept_bfloat16_probabilities():
  """The simplex tolerance scales with the dtype: bf16 rounding is not refused eagerly."""
  probs = jnp.asarray(np.random.RandomState(0).dirichlet(np.ones(10), 6)).astype(jnp.bfloat16)
  probs = jnp.concatenate([probs, jnp.full((2, 10), 0.1, jnp.bfloat16)])  # 0.1 -> 0.10009765625
  assert float(jnp.sum(probs.astype(jnp.float32), -1).max()) - 1 > 1e-3  # off by bf16 rounding
  for f, kw in ((losses.collision_pseudo_labels, {}), (losses.shannon_pseudo_labels, {}),
                (losses.pgd_pseudo_labels, {"step_size": 0.1})):
    y, _ = f(probs, **kw)
    ref, _ = f(np.asarray(probs.astype(jnp.float32)) / np.asarray(
        probs.astype(jnp.float32)).sum(-1, keepdims=True), **kw)
    np.testing.assert_allclose(y, ref, atol=2e-2)
  with pytest.raises(ValueError, match="row sum"):  # float32 keeps the tight tolerance
    losses.collision_pseudo_labels(np.full((2, 4), 0.26, np.float32))


def test_traced_all_false_where_gives_the_start_point_not_nan():
  none = jnp.zeros(B, bool)
  for f, kw in ((losses.collision_pseudo_labels, {}), (losses.shannon_pseudo_labels, {}),
                (losses.pgd_pseudo_labels, {"step_size": 0.1})):
    y, n = jax.jit(lambda p, w: f(p, where=w, **kw))(T, none)
    np.testing.assert_array_equal(y, T)
    assert int(n) == 0


def test_fierce_entropy_with_a_tiny_temperature_is_finite_under_jit():
  codes = losses.fierce_codes(KEY, 6, 4)
  f = jnp.asarray(F)
  h = jax.jit(lambda f: losses.fierce_entropy(f, codes, KEY, temperature=1e-30))(f)
  assert h == losses.fierce_entropy(f, codes, KEY)  # the forward value does not use tau
  g = jax.jit(jax.grad(lambda f: losses.fierce_entropy(f, codes, KEY, temperature=1e-30)))(f)
  assert np.isfinite(np.asarray(g)).all()
  np.testing.assert_allclose(jax.grad(lambda f: losses.fierce_entropy(f, codes, KEY))(f),
                             jax.grad(lambda f: losses.fierce_entropy(f, codes, KEY, temperature=1.0))(f))


def test_penalty_norms_do_not_overflow_when_the_value_fits():
  big = jnp.full((1, 4), 1e30, jnp.float32)
  np.testing.assert_allclose(losses.actdiff_penalty(big, jnp.zeros_like(big)), [2e30], rtol=1e-6)
  g = jax.grad(lambda f: losses.actdiff_penalty(f, jnp.zeros_like(f)).sum())(big)
  np.testing.assert_allclose(g, np.full((1, 4), 0.5), rtol=1e-6)  # d||x||/dx = x / ||x||
  np.testing.assert_allclose(losses.actdiff_penalty(jnp.array([[3., 0.]]), jnp.array([[0., 4.]])),
                             [5.0])
  assert np.asarray(jax.grad(lambda f: losses.actdiff_penalty(f, f).sum())(big) == 0).all()
  # RRR is a squared norm: finite exactly when the value fits in float32 (4e36 does, 4e38 not).
  grads = jnp.full((1, 2, 2), 1e18, jnp.float32)
  np.testing.assert_allclose(losses.rrr_penalty(grads, jnp.zeros((1, 2, 2))), [4e36], rtol=1e-6)
  assert np.isinf(losses.rrr_penalty(grads * 10, jnp.zeros((1, 2, 2))))[0]


def test_simplex_projection_of_huge_inputs():
  v = jnp.array([[1e30, 0.0, -1e30], [2.0, 0.0, 0.0], [0.3, 0.2, -1.0]])
  np.testing.assert_allclose(losses.simplex_projection(v),
                             [[1, 0, 0], [1, 0, 0], [0.55, 0.45, 0]], atol=1e-6)
  jac = jax.jacobian(lambda x: losses.simplex_projection(x))(v[0])
  assert np.isfinite(np.asarray(jac)).all()


def _folder(root, classes, *, mask_size=None):
  from PIL import Image
  for i, cls in enumerate(classes):
    d = root / "train" / cls
    d.mkdir(parents=True)
    if cls.startswith("empty"):
      continue
    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / "a.png")
    if mask_size:
      Image.fromarray(np.zeros((mask_size, mask_size), np.uint8)).save(d / "a_mask.png")


def test_masked_folder_refuses_a_mask_of_another_size_and_an_empty_class(tmp_path):
  from labelwise.data.builders import masked_folder as MF
  _folder(tmp_path / "ok", ["a", "b"], mask_size=8)
  _, classes = MF.folder_layout(str(tmp_path / "ok"))
  assert MF.read_masked_folder(str(tmp_path / "ok"), "train", classes, 4)[1].shape == (2, 4, 4)
  _folder(tmp_path / "size", ["a", "b"], mask_size=6)
  with pytest.raises(ValueError, match=r"mask .*a_mask.png' is 6x6 pixels but its image 'a.png' "
                                       r"is 8x8"):
    MF.read_masked_folder(str(tmp_path / "size"), "train", ["a", "b"], 4)
  _folder(tmp_path / "empty", ["a", "empty_b"])
  with pytest.raises(ValueError, match=r"class folder .*empty_b' holds no images"):
    MF.folder_layout(str(tmp_path / "empty"))
