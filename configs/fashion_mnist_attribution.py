r"""Attribution control on decoy Fashion-MNIST (Ross et al. 2017's Decoy-MNIST protocol), 2-conv CNN.

Training images carry a corner patch whose grey level gives the label away; ``test_shift`` shades
it with a random label (``test_nodistractor``: no patch). The mask is the garment's silhouette.
One config for every arm (as configs/crosses_attribution.py):

    python -m labelwise.train --config=configs/fashion_mnist_attribution.py:method=ce --workdir=runs/fmd_ce
    python -m labelwise.train --config=configs/fashion_mnist_attribution.py:method=rrr,lam=10 --workdir=runs/fmd_rrr
    python -m labelwise.train --config=configs/fashion_mnist_attribution.py:method=actdiff,fraction=0.25 --workdir=runs/x
    python -m labelwise.train --config=configs/fashion_mnist_attribution.py:method=gradmask,runlocal --workdir=runs/smoke

Arguments: ``method`` (ce, classify_masked, actdiff, gradmask, rrr, adversarial; default actdiff),
``lam``, ``fraction`` (share of training images that carry their mask: 1, 0.5, 0.25), ``seed``,
``runlocal``. The ``attribution`` evaluator reports accuracy and AUC on every split
(``valid_id``, ``valid_shift``, ``test_id``, ``test_shift``, ``test_nodistractor``) and saliency
metrics on ``test_shift``. The ceiling is CE on plain ``fashion_mnist`` (configs/fashion_mnist_ce.py).
Model (``attribution_cnn`` = the 2-conv flatten CNN, no BatchNorm) and budget as fashion_mnist_ce.
"""

from labelwise.configs import common, crosses_attribution, fashion_mnist_common


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "fraction", "lam"))
  method = args.get("method", "actdiff")
  if method not in crosses_attribution.METHODS:
    raise ValueError(f"`method` must be one of {crosses_attribution.METHODS}, got {method!r}.")
  c = common.base_config(dataset="fashion_mnist_decoy", model="attribution_cnn", method=method)
  fashion_mnist_common.two_conv_cnn(c)
  c.data.validation_split = "valid_id"
  c.data.eval_split = "test_shift"
  c.evaluators = ("classification", "attribution")
  c.attribution_eval = dict(split="test_shift", ig_steps=32, blur_sigma=0.0, max_examples=512,
                            picture_examples=8)
  crosses_attribution.apply_arm(c, method, args)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c, steps=10)
    c.data.validation_split = "valid_id[:512]"
    c.data.eval_split = "test_shift[:512]"
    c.attribution_eval.max_examples = 16
    c.attribution_eval.ig_steps = 4
    c.attribution_eval.picture_examples = 4
  return c
