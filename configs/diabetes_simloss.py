r"""SimLoss with an ordinal similarity S = r^|i-j| on diabetes_ordinal (offline), MLP.

scikit-learn's diabetes target in 10 quantile bins (E1 of the SimLoss study, docs/simloss.md).

    python -m labelwise.train --config=configs/diabetes_simloss.py --workdir=runs/diabetes_simloss
    python -m labelwise.train --config=configs/diabetes_simloss.py:r=0.9 --workdir=runs/diab_r09
    python -m labelwise.train --config=configs/diabetes_simloss.py:runlocal --workdir=runs/smoke
    python -m labelwise.train --config=configs/diabetes_simloss.py:method=sord --workdir=runs/diab_sord

Arguments (comma separated): ``runlocal``, ``seed=N``, ``r=R`` (reduction factor),
``method=simloss|ce|label_smoothing|sord``, ``fold=K`` (train on the other 4 of 5 folds of the ``cv``
split, evaluate on fold K). Evaluators: classification + ordinal (MAE, MSE, failure severity,
number of distinct predicted classes). Expected: accuracy ~0.2-0.25 (10 bins), MAE ~1.8 bins; only
a large r changes the MAE noticeably (see experiments/simloss/results.md).
"""

from labelwise.configs import common

METHODS = ("simloss", "ce", "label_smoothing", "sord")


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "r", "fold"))
  method = args.get("method", "simloss")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}.")
  c = common.base_config(dataset="diabetes_ordinal", model="mlp", method=method)
  c.model_kwargs.hidden = (64,)
  c.batch_size = 64
  c.total_steps = 600
  c.log_every = 100
  c.checkpoint_every = -1
  c.optimizer = common.optimizer("adam", 1e-3)
  c.evaluators = ("classification", "ordinal")
  c.simloss = dict(similarity="ordinal", reduction_factor=float(args.get("r", 0.5)),
                   lower_bound=0.5, embeddings="", epsilon=0.0)
  c.label_smoothing = dict(alpha=0.1)
  c.sord = dict(scale=1.0)
  if "fold" in args:
    k = int(args["fold"])
    if not 0 <= k < 5:
      raise ValueError(f"`fold` must be in 0..4, got {k}.")
    lo, hi = 20 * k, 20 * (k + 1)
    c.data.train_split = "+".join(s for s in (f"cv[:{lo}%]" if lo else "",
                                              f"cv[{hi}%:]" if hi < 100 else "") if s)
    c.data.eval_split = f"cv[{lo}%:{hi}%]"
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c)
    c.checkpoint_every = -1
  return c
