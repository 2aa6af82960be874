r"""Self-labeled clustering on MNIST 28x28 (train+test, 70k) (catalog), the paper's setting.

Prepare the data once (needs network and the `prepare` extra):

    python -m labelwise.data.prepare mnist
    python -m labelwise.train --config=configs/mnist_cluster.py --workdir=runs/mnist_cluster
    python -m labelwise.train --config=configs/mnist_cluster.py:method=shannon_cluster --workdir=runs/mnist_cluster_shannon
    python -m labelwise.train --config=configs/mnist_cluster.py:runlocal --workdir=/tmp/smoke

Args as in ``configs/digits_cluster.py`` (method, lam, fairness, pseudo, update_every, seed).
Trained from scratch (small_cnn); the paper's strongest numbers use self-supervised features and
augmentation-based consistency, which this config does not reproduce (see docs/collision.md).
"""

from labelwise.configs import collision_common, common

def get_config(arg=None):
  args = common.parse_arg(arg)
  c = collision_common.cluster_config(args, dataset="mnist", model="small_cnn")
  c.model_kwargs.channels = (32, 64)
  c.model_kwargs.dense = 128
  c.data.train_split = "train+test"
  c.data.eval_split = "train+test"
  c.data.augment = False
  c.batch_size = 256
  c.total_steps = 20_000
  c.log_every = 100
  c.checkpoint_every = 2000
  c.optimizer = common.optimizer("adam", 1e-3, weight_decay=1e-4, schedule="cosine",
                                 warmup_steps=500)
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.eval_batch_size = 8
  return c
