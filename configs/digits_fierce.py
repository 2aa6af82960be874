r"""FIERCE on scikit-learn digits (offline): train on coarse labels, evaluate fine-grain features.

MLP 64-256-256-64 + linear head (the method sheet's offline study), Adam 1e-3, batch 128.
Coarse labels: ``halves`` ({0-4} vs {5-9}, default), ``parity`` or ``pairs``. Evaluators:
classification (coarse accuracy) and fine_grain (fine 5-NN and logistic probe on frozen features).

    python -m labelwise.train --config=configs/digits_fierce.py --workdir=runs/digits_fierce
    python -m labelwise.train --config=configs/digits_fierce.py:lam=2,tau=0.1,coarse=parity \
        --workdir=runs/digits_fierce_parity
    python -m labelwise.train --config=configs/digits_fierce.py:method=ce --workdir=runs/digits_ce_coarse
    python -m labelwise.train --config=configs/digits_fierce.py:method=label_smoothing,alpha=0.1 \
        --workdir=runs/digits_ls_coarse
    python -m labelwise.train --config=configs/digits_fierce.py:method=ce,train_on=fine \
        --workdir=runs/digits_ce_fine          # upper bound: CE on the fine labels
    python -m labelwise.train --config=configs/digits_fierce.py:bottleneck,coarse=halves \
        --workdir=runs/digits_fierce_1d        # 1-D bottleneck feature (Spearman), bins estimator
    python -m labelwise.train --config=configs/digits_fierce.py:runlocal --workdir=runs/smoke

Arguments: see ``configs/fierce_common.py``; plus ``bottleneck`` (last hidden width 1, a LINEAR
feature: ``model_kwargs.linear_features``; FIERCE uses the scalar-feature bins estimator with K=20
unless set).
Expected (our study, experiments/fierce): FIERCE no better than CE on fine 5-NN / probe.
"""

from labelwise.configs import common
from labelwise.configs import fierce_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=fierce_common.ARGS + ("bottleneck",))
  c = common.base_config(dataset="digits", model="mlp", method="fierce")
  c.model_kwargs.hidden = (64, 256, 256, 64)
  if args.get("bottleneck"):
    c.model_kwargs.hidden = (64, 256, 256, 1)
    c.model_kwargs.linear_features = True
    args.setdefault("similarity", "bins")
    args.setdefault("codes", "20")
  c.batch_size = 128
  c.total_steps = 1000
  c.optimizer = common.optimizer("adam", 1e-3)
  fierce_common.apply_arm(c, args, default_coarse="halves")
  if args.get("runlocal"):
    common.apply_runlocal(c)
  return c
