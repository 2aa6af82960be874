r"""Average-K classification on CIFAR-10H (catalog; the paper's dataset), ResNet-18.

CIFAR-10H (Peterson et al. 2019) holds ~50 human labels for each of the 10,000 CIFAR-10 test images
(``soft_label``); ``test`` is its only split. Split protocol used here (the paper's exact protocol
could not be read): ``test[:7000]`` train, ``test[7000:8000]`` validation (threshold calibration),
``test[8000:]`` test. Each training image gets ONE label drawn once from its human distribution
(``sampled_labels_from="soft_label"``, fixed by ``label_seed`` and the image index), as a single
annotator would give. The ``average_k`` evaluator scores against the original CIFAR-10 label and
uses the human distribution as the reference posterior (oracle = threshold on ``soft_label``).

    python -m labelwise.data.prepare cifar10_h
    python -m labelwise.train --config=configs/cifar10h_avgk.py --workdir=runs/c10h_two_head
    python -m labelwise.train --config=configs/cifar10h_avgk.py:method=softmax --workdir=runs/c10h_sm
    python -m labelwise.train --config=configs/cifar10h_avgk.py:method=epr,k=1.5 --workdir=runs/c10h_epr
    python -m labelwise.train --config=configs/cifar10h_avgk.py:runlocal --workdir=runs/smoke

Arguments: ``method`` in two_head (rule B, default), two_head_a (rule A), softmax (softmax
thresholding: ``two_head`` with weight 0, which is exactly CE on the sampled labels),
assume_negative, epr; ``k`` (default 1.5); ``weight`` (two-head alpha / EPR lambda, default 1);
``seed``; ``runlocal``.
"""

import ml_collections

from labelwise.configs import common

_METHODS = {
    "two_head": ("two_head", dict(include_true=True)),
    "two_head_a": ("two_head", dict(include_true=False)),
    "softmax": ("two_head", dict(include_true=True, weight=0.0)),
    "assume_negative": ("assume_negative", dict()),
    "epr": ("epr", dict()),
}


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "k", "weight"))
  variant = args.get("method", "two_head")
  if variant not in _METHODS:
    raise ValueError(f"`method` must be one of {sorted(_METHODS)}, got {variant!r}.")
  method, options = _METHODS[variant]
  c = common.base_config(dataset="cifar10_h", model="resnet18", method=method)
  c.model_kwargs.norm = "batch"
  c.data.train_split = "test[:7000]"
  c.data.validation_split = "test[7000:8000]"
  c.data.eval_split = "test[8000:]"
  c.data.augment = True
  c.batch_size = 128
  c.total_steps = 100 * 7000 // 128
  c.log_every = 100
  c.checkpoint_every = 1000
  c.optimizer = common.optimizer("sgd", 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_steps=200)
  opts = dict(options, sampled_labels_from="soft_label", label_seed=0)
  if method in ("two_head", "epr"):
    opts["k"] = float(args.get("k", 1.5))
    opts.setdefault("weight", float(args.get("weight", 1.0)))
  c[method] = ml_collections.ConfigDict(opts)
  c.evaluators = ("classification", "average_k")
  c.avgk_eval = ml_collections.ConfigDict(dict(
      ks=(1.0, 1.5, 2.0, 3.0), ambiguous_max_posterior=0.5, tail_fraction=1.0 / 3.0,
      oracle=True, posterior_field="soft_label"))
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.model_kwargs.width = 8
    c.data.validation_split = "test[7000:7100]"
    c.data.eval_split = "test[8000:8100]"
  return c
