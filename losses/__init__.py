"""Pure, jittable classification losses that use more than a one-hot label.

Every loss returns per-example values ``[batch]``; the caller reduces. Hyperparameters are
keyword-only. See each function's docstring for the formula and the paper.
"""

from labelwise.losses.classification import softmax_cross_entropy
from labelwise.losses.classification import softmax_cross_entropy_with_targets
from labelwise.losses.host_checks import validate  # opt-in host-side value checks (NaN, label range)
# Method modules (one line each, kept sorted by method):
from labelwise.losses.attribution import shuffle_outside_mask, actdiff_penalty, gradmask_penalty, rrr_penalty, gradmask_score, rrr_score, input_gradients, mask_weights, reduce_masked_penalty, validate_masks  # noqa: E501
from labelwise.losses.average_k import average_k_pseudo_labels, two_head_loss, assume_negative_loss, expected_positive_regularizer, mean_binary_cross_entropy, num_pseudo_positives  # noqa: E501
from labelwise.losses.collision import collision_cross_entropy, collision_cross_entropy_with_logits, collision_pseudo_labels, self_labeling_objective, shannon_pseudo_labels, simplex_projection, pgd_pseudo_labels, mutual_information_loss, check_not_deadlocked  # noqa: E501
from labelwise.losses.fierce import fierce_codes, fierce_entropy, fierce_loss, fierce_objective, koleo_entropy  # noqa: E501
from labelwise.losses.simloss import simloss, simloss_with_targets, ordinal_similarity, superclass_similarity, embedding_similarity, validate_similarity, smoothed_targets, label_smoothing_cross_entropy, sord_targets, hierarchical_targets  # noqa: E501
