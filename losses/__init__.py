"""Pure, jittable classification losses that use more than a one-hot label.

Every loss returns per-example values ``[batch]``; the caller reduces. Hyperparameters are
keyword-only. See each function's docstring for the formula and the paper.
"""

from labelwise.losses.classification import softmax_cross_entropy
from labelwise.losses.classification import softmax_cross_entropy_with_targets
# Method modules (one line each, kept sorted by method):
