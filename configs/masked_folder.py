r"""Attribution control on your own masked images (ResNet-18, CIFAR 3x3 stem, GroupNorm).

The images and masks are read from the folder named by ``$LABELWISE_MASKED_FOLDER`` (layout in
``data/builders/masked_folder.py``: ``<root>/<split>/<class>/<image>.png`` plus optional
``<image>_mask.png``, nonzero inside the region of interest), resized to
``$LABELWISE_MASKED_FOLDER_SIZE`` (default 64) pixels:

    LABELWISE_MASKED_FOLDER=/data/xray python -m labelwise.train \
        --config=configs/masked_folder.py:method=gradmask,lam=1 --workdir=runs/xray_gradmask
    LABELWISE_MASKED_FOLDER=/data/xray python -m labelwise.train \
        --config=configs/masked_folder.py:method=actdiff,fraction=0.5,runlocal --workdir=runs/smoke

Arguments: ``method`` (ce, classify_masked, actdiff, gradmask, rrr; default gradmask), ``lam``,
``fraction`` (share of training images that use their mask), ``eval_split`` (default ``test``),
``seed``, ``runlocal``. GroupNorm instead of BatchNorm: train-mode BatchNorm mixes examples in the
input gradients and ActDiff's second half-batch would enter its statistics.
"""

from labelwise.configs import common

METHODS = ("ce", "classify_masked", "actdiff", "gradmask", "rrr")


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "eval_split", "fraction", "lam"))
  method = args.get("method", "gradmask")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
  c = common.base_config(dataset="masked_folder", model="resnet18", method=method)
  c.model_kwargs.width = 64
  c.model_kwargs.stage_sizes = (2, 2, 2, 2)
  c.model_kwargs.norm = "group"
  c.data.eval_split = args.get("eval_split", "test")
  c.data.augment = False  # random crops/flips would move the image away from its mask
  c.batch_size = 64
  c.total_steps = 5000
  c.checkpoint_every = 1000
  c.optimizer = common.optimizer("adam", 1e-4)
  c.evaluators = ("classification", "attribution")
  c.attribution_eval = dict(split=c.data.eval_split, ig_steps=32, blur_sigma=1.0,
                            max_examples=256, picture_examples=8)
  if method != "ce":
    opts = {"mask_fraction": float(args.get("fraction", 1.0))}
    if method in ("actdiff", "gradmask", "rrr"):
      opts["lam"] = float(args.get("lam", 1.0))
    c[method] = opts
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=10)
    c.model_kwargs.width = 8
    c.model_kwargs.stage_sizes = (1, 1, 1, 1)
    c.batch_size = 8
    c.attribution_eval.max_examples = 8
    c.attribution_eval.ig_steps = 4
    c.attribution_eval.picture_examples = 4
  return c
