r"""Collision vs Shannon cross-entropy on noisy soft targets, scikit-learn digits (offline).

    python -m labelwise.train --config=configs/digits_collision_soft.py --workdir=runs/dcs
    python -m labelwise.train --config=configs/digits_collision_soft.py:method=shannon_soft,level=0.8 --workdir=runs/dss
    python -m labelwise.train --config=configs/digits_collision_soft.py:targets=flat,level=0.5,model=linear --workdir=runs/x
    python -m labelwise.train --config=configs/digits_collision_soft.py:runlocal --workdir=runs/smoke

Args: ``method`` (collision_soft | shannon_soft), ``targets`` (mix | flat | onehot), ``level`` (eta for
mix, rho for flat; default 0.8), ``model`` (mlp: one hidden layer of 128 | linear), ``seed``.
Targets are made from the clean labels (see ``labelwise.train.methods.collision``); evaluation uses
the clean test labels. Method sheet pilot (mix, eta=0.8, MLP): collision ~0.97 vs Shannon ~0.50.
"""

from labelwise.configs import collision_common, common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.SOFT_ARGS + ("model",))
  args.setdefault("level", 0.8)
  model = args.get("model", "mlp")
  if model not in ("mlp", "linear"):
    raise ValueError(f"`model` must be 'mlp' or 'linear', got {model!r}.")
  c = collision_common.soft_config(args, dataset="digits", model="mlp")
  c.model_kwargs.hidden = (128,) if model == "mlp" else ()
  c.batch_size = 64
  c.total_steps = 1500
  c.log_every = 100
  c.checkpoint_every = 0
  c.optimizer = common.optimizer("adam", 1e-3)
  if args.get("runlocal"):
    common.apply_runlocal(c)
  return c
