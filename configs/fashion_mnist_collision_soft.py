r"""Collision vs Shannon cross-entropy on noisy soft targets, Fashion-MNIST, 2-conv CNN.

    python -m labelwise.train --config=configs/fashion_mnist_collision_soft.py --workdir=runs/fm_cs
    python -m labelwise.train --config=configs/fashion_mnist_collision_soft.py:method=shannon_soft,level=0.8 --workdir=runs/fm_ss
    python -m labelwise.train --config=configs/fashion_mnist_collision_soft.py:targets=flat,level=0.5 --workdir=runs/x
    python -m labelwise.train --config=configs/fashion_mnist_collision_soft.py:runlocal --workdir=runs/smoke

Args: ``method`` (collision_soft | shannon_soft), ``targets`` (mix | flat | onehot), ``level`` (eta
for mix, rho for flat; default 0.8), ``noise_seed``, ``seed``. Targets are made from the clean
labels of ``train`` (see ``labelwise.train.methods.collision``); evaluation uses the clean ``test``
labels. Model and budget as configs/fashion_mnist_ce.py.
"""

from labelwise.configs import collision_common, common, fashion_mnist_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.SOFT_ARGS)
  args.setdefault("level", 0.8)
  c = collision_common.soft_config(args, dataset="fashion_mnist", model="small_cnn")
  fashion_mnist_common.two_conv_cnn(c)
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c)
  return c
