r"""Self-labeled clustering on CIFAR-100 with its 20 superclasses as the clusters (train+test, 60k) (catalog), the paper's setting.

Prepare the data once (needs network and the `prepare` extra):

    python -m labelwise.data.prepare cifar100
    python -m labelwise.train --config=configs/cifar100_20_cluster.py --workdir=runs/cifar100_20_cluster
    python -m labelwise.train --config=configs/cifar100_20_cluster.py:method=shannon_cluster --workdir=runs/cifar100_20_cluster_shannon
    python -m labelwise.train --config=configs/cifar100_20_cluster.py:runlocal --workdir=runs/smoke

Args as in ``configs/digits_cluster.py`` (method, lam, fairness, pseudo, update_every, seed).
Trained from scratch (resnet18); the paper's strongest numbers use self-supervised features and
augmentation-based consistency, which this config does not reproduce (see docs/collision.md).
"""

from labelwise.configs import collision_common, common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS)
  c = collision_common.catalog_cluster_config(args, dataset="cifar100", model="resnet18",
                                              augment=True)
  c.data.coarse = "dataset"
  c.data.train_on = "coarse_label"   # 20 clusters, scored against the 20 superclasses
  return c
