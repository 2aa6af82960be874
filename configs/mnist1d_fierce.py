r"""FIERCE on MNIST-1D (offline, generated): train on coarse labels, evaluate fine-grain features.

MLP 64-256-256-64 on the 40-sample signals (the method sheet's offline study), Adam 1e-3.

    python -m labelwise.train --config=configs/mnist1d_fierce.py --workdir=runs/mnist1d_fierce
    python -m labelwise.train --config=configs/mnist1d_fierce.py:method=ce --workdir=runs/m1d_ce
    python -m labelwise.train --config=configs/mnist1d_fierce.py:method=label_smoothing \
        --workdir=runs/m1d_ls
    python -m labelwise.train --config=configs/mnist1d_fierce.py:lam=1,tau=0.1,coarse=pairs \
        --workdir=runs/m1d_fierce_pairs
    python -m labelwise.train --config=configs/mnist1d_fierce.py:runlocal --workdir=runs/smoke

Arguments: see ``configs/fierce_common.py``.
"""

from labelwise.configs import common
from labelwise.configs import fierce_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=fierce_common.ARGS)
  c = common.base_config(dataset="mnist1d", model="mlp", method="fierce")
  c.model_kwargs.hidden = (64, 256, 256, 64)
  c.batch_size = 128
  c.total_steps = 3000
  c.optimizer = common.optimizer("adam", 1e-3)
  fierce_common.apply_arm(c, args, default_coarse="halves")
  if args.get("runlocal"):
    common.apply_runlocal(c)
  return c
