r"""Cross-entropy baseline on scikit-learn digits (offline), MLP.

    python -m labelwise.train --config=configs/digits_ce.py --workdir=runs/digits_ce
    python -m labelwise.train --config=configs/digits_ce.py:runlocal --workdir=runs/smoke
    python -m labelwise.train --config=configs/digits_ce.py:model=small_cnn --workdir=runs/x

Expected: ~97% test accuracy after 1000 steps (batch 128, Adam 1e-3).
"""

from labelwise.configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("model",))
  c = common.base_config(dataset="digits", model=args.get("model", "mlp"), method="ce")
  if c.model == "mlp":  # other models with their defaults (--config.model would keep `hidden`)
    c.model_kwargs.hidden = (128, 128)
  c.batch_size = 128
  c.total_steps = 1000
  c.optimizer = common.optimizer("adam", 1e-3)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c)
  return c
