r"""FIERCE on Fashion-MNIST: train on coarse labels (``hcnn6`` or ``clothes_goods``), evaluate the
fine 10-class information of the frozen features, 2-conv CNN.

    python -m labelwise.train --config=configs/fashion_mnist_fierce.py --workdir=runs/fm_fierce
    python -m labelwise.train --config=configs/fashion_mnist_fierce.py:coarse=clothes_goods,lam=2,tau=0.1 --workdir=runs/x
    python -m labelwise.train --config=configs/fashion_mnist_fierce.py:method=ce --workdir=runs/fm_ce_coarse
    python -m labelwise.train --config=configs/fashion_mnist_fierce.py:method=label_smoothing,alpha=0.1 --workdir=runs/fm_ls
    python -m labelwise.train --config=configs/fashion_mnist_fierce.py:method=ce,train_on=fine --workdir=runs/fm_ce_fine
    python -m labelwise.train --config=configs/fashion_mnist_fierce.py:runlocal --workdir=runs/smoke

Arguments: see ``configs/fierce_common.py`` (``coarse`` default ``hcnn6``; ``scale`` is the logit
scale). Evaluators: classification (coarse accuracy on ``test``) and fine_grain (fine 5-NN and
logistic probe on frozen features, fitted on 10,000 training images). Model and budget as
configs/fashion_mnist_ce.py.
"""

from labelwise.configs import common, fashion_mnist_common, fierce_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=fierce_common.ARGS)
  c = common.base_config(dataset="fashion_mnist", model="small_cnn", method="fierce")
  fashion_mnist_common.two_conv_cnn(c)
  fierce_common.apply_arm(c, args, default_coarse="hcnn6")
  c.fine_grain_eval.max_train = 10_000
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c)
    c.fine_grain_eval.max_train = 512
  return c
