r"""Self-labeled clustering of all 70,000 Fashion-MNIST images, K = 10, 2-conv CNN.

    python -m labelwise.train --config=configs/fashion_mnist_cluster.py --workdir=runs/fm_cluster
    python -m labelwise.train --config=configs/fashion_mnist_cluster.py:method=shannon_cluster --workdir=runs/fm_sc
    python -m labelwise.train --config=configs/fashion_mnist_cluster.py:method=mi_cluster --workdir=runs/fm_mi
    python -m labelwise.train --config=configs/fashion_mnist_cluster.py:augment --workdir=runs/fm_cluster_aug
    python -m labelwise.train --config=configs/fashion_mnist_cluster.py:runlocal --workdir=runs/smoke

Args as in ``configs/digits_cluster.py`` (method, lam, fairness, pseudo, update_every, seed) plus
``augment`` (random crops and flips of the training batches). Training and evaluation both use
train+validation+test (clustering is unsupervised; labels only score it: ACC with Hungarian
matching, NMI, ARI). Published Fashion-MNIST clustering anchors: N2D 0.672 ACC, ClusterGAN 0.63,
DEC-DA 0.586 (see docs/collision.md for which use augmentation).
"""

from labelwise.configs import collision_common, common, fashion_mnist_common

ALL = "train+validation+test"


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS + ("augment",))
  c = collision_common.cluster_config(args, dataset="fashion_mnist", model="small_cnn")
  fashion_mnist_common.two_conv_cnn(c, steps=20 * 70_000 // 256)
  c.data.train_split = c.data.eval_split = ALL
  c.data.validation_split = ""
  c.data.augment = bool(args.get("augment", False))
  c.batch_size = 256
  c.optimizer = common.optimizer("adam", 1e-3, weight_decay=1e-4, schedule="cosine",
                                 warmup_steps=200)
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c)
    c.data.eval_split = "test[:512]"
    c.data.validation_split = ""
  return c
