r"""SimLoss with a superclass similarity on hierarchy_gaussians (offline), MLP.

20 superclasses x 5 Gaussian classes, 10 training examples per class (E2 of the SimLoss study).
S = 1 on the diagonal, r within a superclass, 0 otherwise (the dataset's fine-to-coarse map).

    python -m labelwise.train --config=configs/hierarchy_simloss.py --workdir=runs/hier_simloss
    python -m labelwise.train --config=configs/hierarchy_simloss.py:r=0.9 --workdir=runs/hier_r09
    python -m labelwise.train --config=configs/hierarchy_simloss.py:runlocal --workdir=runs/smoke
    python -m labelwise.train --config=configs/hierarchy_simloss.py:method=hierarchical_soft \
        --workdir=runs/hier_soft

Arguments: ``runlocal``, ``seed=N``, ``r=R``, ``method=simloss|ce|label_smoothing|hierarchical_soft``.
Evaluators: classification (accuracy, top-5) + superclass (superclass accuracy, failed superclass
accuracy). Expected: superclass accuracy and failed superclass accuracy grow with r.
"""

from labelwise.configs import common

METHODS = ("simloss", "ce", "label_smoothing", "hierarchical_soft")


def apply_arms(c, args: dict, *, r: float) -> None:
  """The arms' options: SimLoss with the superclass similarity (``:r=...``, default ``r``), label
  smoothing 0.1, hierarchical soft labels beta 2."""
  c.simloss = dict(similarity="superclass", reduction_factor=float(args.get("r", r)),
                   lower_bound=0.5, embeddings="", epsilon=0.0)
  c.label_smoothing = dict(alpha=0.1)
  c.hierarchical_soft = dict(beta=2.0)


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "r"))
  method = args.get("method", "simloss")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {list(METHODS)}, got {method!r}.")
  c = common.base_config(dataset="hierarchy_gaussians", model="mlp", method=method)
  c.data.coarse = "dataset"
  c.model_kwargs.hidden = (128,)
  c.batch_size = 100
  c.total_steps = 500
  c.log_every = 100
  c.checkpoint_every = -1
  c.optimizer = common.optimizer("adam", 1e-3)
  c.evaluators = ("classification", "superclass")
  apply_arms(c, args, r=0.5)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c)
    c.batch_size = 32
    c.checkpoint_every = -1
  return c
