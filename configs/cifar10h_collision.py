r"""Collision cross-entropy on CIFAR-10H human soft labels (catalog), ResNet-18.

CIFAR-10H (Peterson et al. 2019) gives a distribution of ~50 human labels for each of the 10,000
CIFAR-10 test images; it is the only split of ``cifar10_h``. Here the first 8,000 images train on the
human distributions (``soft_label``) and the last 2,000 are the evaluation set (clean CIFAR-10 labels).

    python -m labelwise.data.prepare cifar10_h
    python -m labelwise.train --config=configs/cifar10h_collision.py --workdir=runs/c10h_collision
    python -m labelwise.train --config=configs/cifar10h_collision.py:method=shannon_soft --workdir=runs/c10h_shannon
    python -m labelwise.train --config=configs/cifar10h_collision.py:runlocal --workdir=runs/smoke
"""

from labelwise.configs import collision_common, common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.SOFT_ARGS)
  args.setdefault("targets", "soft_label")
  c = collision_common.soft_config(args, dataset="cifar10_h", model="resnet18")
  c.model_kwargs.norm = "batch"
  c.data.train_split = "test[:8000]"
  c.data.eval_split = "test[8000:]"
  c.data.augment = True
  c.batch_size = 128
  c.total_steps = 100 * 8000 // 128
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = common.optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_steps=200)
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.model_kwargs.width = 8
  return c
