r"""Average-K classification on the synthetic ambiguous Gaussians (offline, known posterior), MLP.

    python -m labelwise.train --config=configs/gaussians_avgk.py --workdir=runs/gaussians_two_head
    python -m labelwise.train --config=configs/gaussians_avgk.py:method=ce --workdir=runs/g_ce
    python -m labelwise.train --config=configs/gaussians_avgk.py:method=epr,k=3,n_train=4000 \
        --workdir=runs/g_epr
    python -m labelwise.train --config=configs/gaussians_avgk.py:runlocal --workdir=runs/smoke

Arguments (``:a=b,c=d``): ``method`` in two_head (default), two_head_a (rule A: true label not
forced), oracle (two-head with pseudo-labels from the true posterior), ce (softmax thresholding),
assume_negative, epr; ``k`` (training K of the K-dependent methods, default 2); ``n_train`` (first
n training examples, default 4000; 32000 is the whole split); ``seed``; ``steps`` (default 1500);
``weight`` (two-head alpha, default 1 / EPR lambda, default 100); ``runlocal``.

The ``average_k`` evaluator calibrates the global threshold on ``validation`` (10k) and reports test
(50k) metrics for K in (1.5, 2, 3), for every head, next to the oracle (threshold on the true
posterior) and the regret oracle - method. See docs/average_k.md.
"""

import ml_collections

from labelwise.configs import common

_METHODS = {
    "two_head": ("two_head", dict(include_true=True, pseudo_labels="softmax")),
    "two_head_a": ("two_head", dict(include_true=False, pseudo_labels="softmax")),
    "oracle": ("two_head", dict(include_true=True, pseudo_labels="posterior")),
    "ce": ("ce", None),
    "assume_negative": ("assume_negative", None),
    "epr": ("epr", dict()),
}


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "n_train", "steps", "k", "weight"))
  variant = args.get("method", "two_head")
  if variant not in _METHODS:
    raise ValueError(f"`method` must be one of {sorted(_METHODS)}, got {variant!r}.")
  method, options = _METHODS[variant]
  c = common.base_config(dataset="ambiguous_gaussians", model="mlp", method=method)
  n_train = int(args.get("n_train", 4000))
  c.data.train_split = "train" if n_train >= 32000 else f"train[:{n_train}]"
  c.data.validation_split = "validation"
  c.data.eval_split = "test"
  c.model_kwargs.hidden = (128, 128)
  c.batch_size = 128
  c.eval_batch_size = 2048
  # Same number of updates for every n_train (more epochs on the small sets).
  c.total_steps = int(args.get("steps", 1500))
  c.checkpoint_every = -1
  c.log_every = 500
  c.optimizer = common.optimizer("adam", 1e-3, schedule="cosine")
  k = float(args.get("k", 2.0))
  if options is not None:
    opts = dict(options)
    opts["k"] = k
    if method == "two_head":
      opts["weight"] = float(args.get("weight", 1.0))
    if method == "epr":
      # lambda = 100 by default (with lambda = 1 the regularizer barely acts); the study
      # (experiments/average_k/run.py) tunes it on validation over {10, 30, 100, 300}: 100 won at
      # n_train 4000 and 32000, 300 at 1000.
      opts["weight"] = float(args.get("weight", 100.0))
    c[method] = ml_collections.ConfigDict(opts)
  c.evaluators = ("classification", "average_k")  # also for ce: softmax thresholding
  c.avgk_eval = ml_collections.ConfigDict(dict(
      ks=(1.5, 2.0, 3.0), ambiguous_max_posterior=0.5, tail_fraction=1.0 / 3.0, oracle=True))
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c)
    c.checkpoint_every = -1
    c.data.validation_split = "validation[:1000]"
    c.data.eval_split = "test[:2000]"
    c.eval_batch_size = 1000
  return c
