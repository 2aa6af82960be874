r"""Attribution control on the procedural crosses dataset (offline), small flattening CNN, no BatchNorm.

One config for every arm; the method is an argument (ce, classify_masked, actdiff, gradmask, rrr,
adversarial):

    python -m labelwise.train --config=configs/crosses_attribution.py:method=actdiff --workdir=runs/crosses_actdiff
    python -m labelwise.train --config=configs/crosses_attribution.py:method=gradmask,lam=10 --workdir=runs/crosses_gm
    python -m labelwise.train --config=configs/crosses_attribution.py:method=rrr,fraction=0.5,seed=2 --workdir=runs/x
    python -m labelwise.train --config=configs/crosses_attribution.py:method=actdiff,runlocal --workdir=runs/smoke

Arguments: ``method`` (default actdiff), ``lam`` (penalty weight), ``fraction`` (share of training
images that carry their mask), ``seed``, ``runlocal``. Method options are under
``config.<method>`` (``--config.gradmask.normalization=sum`` gives the authors' batch sum).

The ``attribution`` evaluator reports accuracy and AUC on valid_id, valid_shift, test_id, test_shift
and test_nodistractor, saliency IoU/IoP/mass on test_shift, and writes ``saliency_test_shift.png``.
Expected (Viviano et al. 2019): CE ~0 AUC on test_shift (it learns the distractor); classify-masked
and ActDiff recover; GradMask partly; RRR little. See docs/attribution.md for what we measured.
"""

from labelwise.configs import common

METHODS = ("ce", "classify_masked", "actdiff", "gradmask", "rrr", "adversarial")
DEFAULT_LAMBDA = {"actdiff": 1.0, "gradmask": 1.0, "rrr": 1.0, "adversarial": 0.1}


def apply_arm(c, method: str, args: dict) -> None:
  """``config.<method>`` from the ``fraction`` and ``lam`` arguments (nothing for ``ce``)."""
  if method != "ce":
    opts = {"mask_fraction": float(args.get("fraction", 1.0))}
    if method in DEFAULT_LAMBDA:
      opts["lam"] = float(args.get("lam", DEFAULT_LAMBDA[method]))
    c[method] = opts


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "fraction", "lam"))
  method = args.get("method", "actdiff")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
  c = common.base_config(dataset="crosses", model="attribution_cnn", method=method)
  c.model_kwargs.channels = (16, 32)
  c.model_kwargs.dense = 128
  c.data.eval_split = "test_shift"
  c.data.augment = False  # a flip would destroy the left/right distractor
  c.batch_size = 32
  c.total_steps = 800      # ~50 epochs of the 500 training images
  c.log_every = 100
  c.checkpoint_every = -1
  c.optimizer = common.optimizer("adam", 1e-3)
  c.evaluators = ("classification", "attribution")
  c.attribution_eval = dict(split="test_shift", ig_steps=32, blur_sigma=0.0, max_examples=128,
                            picture_examples=8)
  apply_arm(c, method, args)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=10)
    c.checkpoint_every = -1
    c.attribution_eval.max_examples = 16
    c.attribution_eval.ig_steps = 4
    c.attribution_eval.picture_examples = 4
  return c
