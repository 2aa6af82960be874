r"""Average-K classification on Pl@ntNet-300K (the paper's dataset; manual download), ResNet-18.

Put the images in the image-folder layout of ``data/builders/plantnet.py`` under
``$TFDS_DATA_DIR/downloads/manual/`` (1,081 long-tailed species; ``train``/``val``/``test``); the
first run converts them to 64x64 ArrayRecord files. The threshold is calibrated on ``validation``
(the dataset's own ``val`` folder), metrics are reported on ``test`` for K in (1, 2, 3, 5, 10),
micro and macro (the long tail makes macro the interesting one), with top-K for comparison.

    python -m labelwise.train --config=configs/plantnet_avgk.py --workdir=runs/plantnet_two_head
    python -m labelwise.train --config=configs/plantnet_avgk.py:method=ce --workdir=runs/plantnet_ce
    python -m labelwise.train --config=configs/plantnet_avgk.py:method=epr,k=3 --workdir=runs/p_epr
    python -m labelwise.train --config=configs/plantnet_avgk.py:runlocal --workdir=runs/smoke

Arguments: ``method`` in two_head (rule B, default), two_head_a (rule A), ce (softmax
thresholding), assume_negative, epr; ``k`` (training K, default 3); ``weight``; ``seed``;
``runlocal``.
"""

import ml_collections

from labelwise.configs import common

_METHODS = {
    "two_head": ("two_head", dict(include_true=True)),
    "two_head_a": ("two_head", dict(include_true=False)),
    "ce": ("ce", None),
    "assume_negative": ("assume_negative", None),
    "epr": ("epr", dict()),
}


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "k", "weight"))
  variant = args.get("method", "two_head")
  if variant not in _METHODS:
    raise ValueError(f"`method` must be one of {sorted(_METHODS)}, got {variant!r}.")
  method, options = _METHODS[variant]
  c = common.base_config(dataset="plantnet300k", model="resnet18", method=method)
  c.model_kwargs.norm = "batch"
  c.data.train_split = "train"
  c.data.validation_split = "validation"
  c.data.eval_split = "test"
  c.data.augment = True
  c.data.cache_limit = 0  # 243k training images: read on demand
  c.batch_size = 256
  c.total_steps = 30 * 243_916 // 256
  c.eval_batch_size = 512
  c.log_every = 200
  c.eval_every = 0
  c.checkpoint_every = 2000
  c.optimizer = common.optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
                                 schedule="cosine", warmup_steps=500)
  if options is not None:
    opts = dict(options)
    opts["k"] = float(args.get("k", 3.0))
    opts["weight"] = float(args.get("weight", 1.0))
    c[method] = ml_collections.ConfigDict(opts)
  c.evaluators = ("classification", "average_k")
  c.avgk_eval = ml_collections.ConfigDict(dict(
      ks=(1.0, 2.0, 3.0, 5.0, 10.0), ambiguous_max_posterior=0.5, tail_fraction=1.0 / 3.0,
      oracle=False, posterior_field="posterior"))
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.eval_batch_size = 8
    c.model_kwargs.width = 8
    c.data.cache_limit = 200_000
    c.avgk_eval.ks = (1.0, 2.0)
  return c
