r"""Self-labeled clustering on MNIST 28x28 (train+test, 70k) (catalog), the paper's setting.

Prepare the data once (needs network and the `prepare` extra):

    python -m labelwise.data.prepare mnist
    python -m labelwise.train --config=configs/mnist_cluster.py --workdir=runs/mnist_cluster
    python -m labelwise.train --config=configs/mnist_cluster.py:method=shannon_cluster --workdir=runs/mnist_cluster_shannon
    python -m labelwise.train --config=configs/mnist_cluster.py:runlocal --workdir=runs/smoke

Args as in ``configs/digits_cluster.py`` (method, lam, fairness, pseudo, update_every, seed).
Trained from scratch (small_cnn); the paper's strongest numbers use self-supervised features and
augmentation-based consistency, which this config does not reproduce (see docs/collision.md).
"""

from labelwise.configs import collision_common, common

def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS)
  c = collision_common.catalog_cluster_config(args, dataset="mnist", model="small_cnn",
                                              augment=False)
  return c
