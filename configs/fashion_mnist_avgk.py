r"""Average-K classification on Fashion-MNIST, balanced or long-tailed (rho 10 / 100), 2-conv CNN.

    python -m labelwise.train --config=configs/fashion_mnist_avgk.py --workdir=runs/fm_two_head
    python -m labelwise.train --config=configs/fashion_mnist_avgk.py:lt=100 --workdir=runs/fm_lt100_two_head
    python -m labelwise.train --config=configs/fashion_mnist_avgk.py:method=ce,lt=100 --workdir=runs/fm_lt100_ce
    python -m labelwise.train --config=configs/fashion_mnist_avgk.py:method=epr,k=3 --workdir=runs/fm_epr
    python -m labelwise.train --config=configs/fashion_mnist_avgk.py:runlocal --workdir=runs/smoke

Arguments: ``method`` in two_head (rule B, default), two_head_a (rule A), ce (softmax
thresholding), assume_negative, epr; ``k`` (training K, default 2); ``weight`` (two-head alpha,
default 1 / EPR lambda, default 100); ``lt`` (0 = balanced ``train``, 10 or 100 = ``train_lt10`` /
``train_lt100``); ``seed``; ``runlocal``. The ``average_k`` evaluator calibrates the threshold on
the balanced ``validation`` split and reports ``test`` metrics for K in (1.5, 2, 3), micro and
macro, set sizes, and accuracy on the tail third of the classes (no oracle: the true posterior is
unknown). Model and budget as configs/fashion_mnist_ce.py (same number of steps on every split).
"""

import ml_collections

from labelwise.configs import common, fashion_mnist_common

_METHODS = {
    "two_head": ("two_head", dict(include_true=True, pseudo_labels="softmax")),
    "two_head_a": ("two_head", dict(include_true=False, pseudo_labels="softmax")),
    "ce": ("ce", None),
    "assume_negative": ("assume_negative", None),
    "epr": ("epr", dict()),
}
LONG_TAILS = (0, 10, 100)


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "k", "weight", "lt"))
  variant = args.get("method", "two_head")
  if variant not in _METHODS:
    raise ValueError(f"`method` must be one of {sorted(_METHODS)}, got {variant!r}.")
  lt = int(args.get("lt", 0))
  if lt not in LONG_TAILS:
    raise ValueError(f"`lt` must be one of {LONG_TAILS}, got {lt}.")
  method, options = _METHODS[variant]
  c = common.base_config(dataset="fashion_mnist", model="small_cnn", method=method)
  fashion_mnist_common.two_conv_cnn(c)
  c.data.train_split = f"train_lt{lt}" if lt else "train"
  c.eval_batch_size = 1000
  if options is not None:
    opts = dict(options, k=float(args.get("k", 2.0)))
    if method in ("two_head", "epr"):
      opts["weight"] = float(args.get("weight", 1.0 if method == "two_head" else 100.0))
    c[method] = ml_collections.ConfigDict(opts)
  c.evaluators = ("classification", "average_k")
  c.avgk_eval = ml_collections.ConfigDict(dict(ks=(1.5, 2.0, 3.0), tail_fraction=1.0 / 3.0,
                                               oracle=False))
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c)
    c.eval_batch_size = 256
  return c
