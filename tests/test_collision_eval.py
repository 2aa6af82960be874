"""Clustering metrics against hand numbers and scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as sk

from labelwise.eval import metrics


def test_hand_numbers():
  assert metrics.clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
  # Hungarian: clusters {0: [0,0,1], 1: [1,2], 2: [2]}: best one-to-one map 0->0, 1->1, 2->2 = 4/6.
  labels = [0, 0, 1, 1, 2, 2]
  clusters = [0, 0, 0, 1, 1, 2]
  assert metrics.clustering_accuracy(labels, clusters) == pytest.approx(4 / 6)
  # A greedy majority map would send both clusters 0 and 1 to class 0; one-to-one forbids it.
  assert metrics.clustering_accuracy([0, 0, 0, 1, 1], [0, 0, 1, 1, 1]) == pytest.approx(4 / 5)
  # More clusters than classes: many-to-one (each cluster to its majority class).
  assert metrics.clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == 1.0
  np.testing.assert_array_equal(metrics.cluster_to_class_map([0, 0, 1, 1], [0, 1, 2, 3]),
                                [0, 0, 1, 1])
  assert metrics.normalized_mutual_information([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
  assert metrics.adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)


def brute_force_accuracy(labels, clusters, k):
  import itertools
  best = 0.0
  for perm in itertools.permutations(range(k)):
    best = max(best, np.mean(np.asarray(perm)[clusters] == labels))
  return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_and_brute_force(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 5, size=200)
  clusters = np.where(rng.random(200) < 0.6, (labels + 2) % 5, rng.integers(0, 5, size=200))
  assert metrics.clustering_accuracy(labels, clusters) == pytest.approx(
      brute_force_accuracy(labels, clusters, 5))
  assert metrics.normalized_mutual_information(labels, clusters) == pytest.approx(
      sk.normalized_mutual_info_score(labels, clusters), abs=1e-10)
  assert metrics.adjusted_rand_index(labels, clusters) == pytest.approx(
      sk.adjusted_rand_score(labels, clusters), abs=1e-10)
  np.testing.assert_array_equal(metrics.contingency_matrix(labels, clusters),
                                sk.cluster.contingency_matrix(labels, clusters))


def test_kmeans_baseline_separates_blobs():
  rng = np.random.default_rng(0)
  centers = np.eye(3) * 10
  labels = np.repeat(np.arange(3), 30)
  x = centers[labels] + rng.normal(size=(90, 3))
  clusters = metrics.kmeans_clusters(x, 3, seed=0)
  assert metrics.clustering_accuracy(labels, clusters) == 1.0


def test_errors():
  with pytest.raises(ValueError, match="same shape"):
    metrics.clustering_accuracy([0, 1], [0, 1, 1])
  with pytest.raises(TypeError, match="clusters"):
    metrics.clustering_accuracy([0, 1], [0.0, 1.0])
  with pytest.raises(ValueError, match="labels"):
    metrics.normalized_mutual_information(np.zeros((2, 2), int), [0, 1])


# --- found by the clean-clone make mutate pass (docs/testing.md, fifth pass) ---------------------
def test_clustering_accuracy_of_one_example_and_keyword_only_option():
  """One example is always matched (1.0), no examples give NaN; ``many_to_one`` is keyword-only.
  (Killed mutants: ``labels.size == 0`` -> ``== 1``, the ``*`` -> ``/`` of the signature.)"""
  from labelwise.eval import clustering
  assert clustering.clustering_accuracy([3], [0]) == 1.0
  assert np.isnan(clustering.clustering_accuracy(np.zeros(0, int), np.zeros(0, int)))
  with pytest.raises(TypeError):
    clustering.clustering_accuracy([0, 1], [1, 0], True)
  assert clustering.clustering_accuracy([0, 0, 1], [0, 1, 2], many_to_one=True) == 1.0
