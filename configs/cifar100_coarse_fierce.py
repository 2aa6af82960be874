r"""FIERCE on CIFAR-100 (catalog): train ResNet-18 on the 20 superclasses, evaluate on the 100 classes.

The paper's setting closest to ours is few-shot transfer (CIFAR-FS); here the fine-grain protocol is
the same as offline: frozen features, fine 5-NN and logistic probe on the 100 fine labels.
lambda = 1.5 (the authors' CIFAR-FS value), tau = 1, K = 100 codes U(-0.01, 0.01), cosine.

    python -m labelwise.data.prepare cifar100          # once, needs network
    python -m labelwise.train --config=configs/cifar100_coarse_fierce.py --workdir=runs/c100_fierce
    python -m labelwise.train --config=configs/cifar100_coarse_fierce.py:method=ce \
        --workdir=runs/c100_coarse_ce
    python -m labelwise.train --config=configs/cifar100_coarse_fierce.py:method=label_smoothing \
        --workdir=runs/c100_coarse_ls
    python -m labelwise.train --config=configs/cifar100_coarse_fierce.py:method=ce,train_on=fine \
        --workdir=runs/c100_fine_ce            # upper bound
    python -m labelwise.train --config=configs/cifar100_coarse_fierce.py:runlocal --workdir=runs/smoke

Arguments: see ``configs/fierce_common.py`` (``lam`` defaults to 1.5 here).
"""

from labelwise.configs import common
from labelwise.configs import fierce_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=fierce_common.ARGS)
  args.setdefault("lam", "1.5")
  c = common.base_config(dataset="cifar100", model="resnet18", method="fierce")
  c.model_kwargs.norm = "batch"
  c.data.augment = True
  c.batch_size = 256
  c.total_steps = 200 * 50_000 // 256
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.optimizer = common.optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_steps=500)
  fierce_common.apply_arm(c, args, default_coarse="dataset")
  c.fine_grain_eval.max_train = 20_000   # k-NN / probe fit on 20k training features
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.model_kwargs.width = 8
  return c
