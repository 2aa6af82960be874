r"""Self-labeled clustering on STL-10 (train+test, 13k labelled images; the 100k unlabelled split can be added with data.train_split='train+test+unlabelled') (catalog), the paper's setting.

Prepare the data once (needs network and the `prepare` extra):

    python -m labelwise.data.prepare stl10
    python -m labelwise.train --config=configs/stl10_cluster.py --workdir=runs/stl10_cluster
    python -m labelwise.train --config=configs/stl10_cluster.py:method=shannon_cluster --workdir=runs/stl10_cluster_shannon
    python -m labelwise.train --config=configs/stl10_cluster.py:runlocal --workdir=runs/smoke

Args as in ``configs/digits_cluster.py`` (method, lam, fairness, pseudo, update_every, seed).
Trained from scratch (resnet18); the paper's strongest numbers use self-supervised features and
augmentation-based consistency, which this config does not reproduce (see docs/collision.md).
"""

from labelwise.configs import collision_common, common

def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS)
  c = collision_common.catalog_cluster_config(args, dataset="stl10", model="resnet18",
                                              augment=True)
  return c
