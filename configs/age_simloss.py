r"""SimLoss for age estimation from an image folder ``<root>/<age>/*.jpg`` (UTKFace / AFAD layout).

The paper's setup (Kobs et al. 2020): ages 1-90 as 90 classes, 60x60 images, a small CNN, Adam 1e-3,
batch 1024, S = r^|i-j| with r in {0, .1, ..., .9}; metrics accuracy, MAE and MSE of the predicted age.

    export LABELWISE_AGE_FOLDER=/path/to/UTKFace_by_age     # <root>/<age>/*.jpg
    python -m labelwise.train --config=configs/age_simloss.py:r=0.5 --workdir=runs/age_r05
    python -m labelwise.train --config=configs/age_simloss.py:runlocal --workdir=runs/smoke

Arguments: ``runlocal``, ``seed=N``, ``r=R``, ``method=simloss|ce|sord|label_smoothing``.
Early stopping on validation MAE is NOT implemented by the trainer: this config evaluates the
``validation`` split every ``eval_every`` steps (``eval/mae`` in metrics.jsonl) and keeps a checkpoint
at each of those steps, so the best one can be picked (and then evaluated with
``--config.data.eval_split=test``). "The paper's small CNN" is approximated by ``small_cnn`` with
channels (32, 64, 128) and a 256-unit dense layer.
"""

from labelwise.configs import common

METHODS = ("simloss", "ce", "label_smoothing", "sord")


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "r"))
  method = args.get("method", "simloss")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}.")
  c = common.base_config(dataset="age_folder", model="small_cnn", method=method)
  c.model_kwargs.channels = (32, 64, 128)
  c.model_kwargs.dense = 256
  c.data.eval_split = "validation"
  c.batch_size = 1024
  c.total_steps = 3000
  c.eval_every = 200
  c.checkpoint_every = 200
  c.keep_checkpoints = 20
  c.optimizer = common.optimizer("adam", 1e-3)
  c.evaluators = ("classification", "ordinal")
  c.simloss = dict(similarity="ordinal", reduction_factor=float(args.get("r", 0.5)),
                   lower_bound=0.5, embeddings="", epsilon=0.0)
  c.label_smoothing = dict(alpha=0.1)
  c.sord = dict(scale=0.1)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.model_kwargs.channels = (8,)
    c.model_kwargs.dense = 16
    c.checkpoint_every = -1
    c.data.eval_split = "test"
  return c
