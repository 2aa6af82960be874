r"""Cross-entropy baseline on MNIST-1D (offline, generated), 1-D CNN.

    python -m labelwise.train --config=configs/mnist1d_ce.py --workdir=runs/mnist1d_ce
    python -m labelwise.train --config=configs/mnist1d_ce.py:runlocal --workdir=runs/smoke
    python -m labelwise.train --config=configs/mnist1d_ce.py:model=mlp --workdir=runs/mnist1d_mlp

Reference: the MNIST-1D paper reports ~94% for a CNN and ~68% for an MLP on 4000 training signals.
"""

from labelwise.configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("model",))
  c = common.base_config(dataset="mnist1d", model=args.get("model", "small_cnn"), method="ce")
  if c.model == "small_cnn":
    c.model_kwargs.channels = (32, 64, 64)
    c.model_kwargs.dense = 128
  else:
    c.model_kwargs.hidden = (256, 256)
  c.batch_size = 128
  c.total_steps = 3000
  c.optimizer = common.optimizer("adam", 3e-3, schedule="cosine")
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c)
  return c
