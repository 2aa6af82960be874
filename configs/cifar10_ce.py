r"""Cross-entropy baseline on CIFAR-10 (catalog), ResNet-18, SGD + cosine, 200 epochs.

Prepare the data once (needs network and the `prepare` extra):

    python -m labelwise.data.prepare cifar10
    python -m labelwise.train --config=configs/cifar10_ce.py --workdir=runs/cifar10_ce
    python -m labelwise.train --config=configs/cifar10_ce.py:runlocal --workdir=runs/smoke

Expected: ~95% test accuracy (standard ResNet-18 recipe).
"""

from labelwise.configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS)
  c = common.base_config(dataset="cifar10", model="resnet18", method="ce")
  c.model_kwargs.norm = "batch"
  c.data.augment = True
  c.batch_size = 128
  c.total_steps = 200 * 50_000 // 128
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.optimizer = common.optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                 schedule="cosine", warmup_steps=500)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    c.model_kwargs.width = 8
  return c
