r"""SimLoss on Fashion-MNIST with the H-CNN superclass similarity (``hcnn6``), 2-conv CNN.

S = 1 on the diagonal, r between two classes of the same ``hcnn6`` group (tops {T-shirt, Pullover,
Shirt}, shoes {Sandal, Sneaker, Ankle boot}; the other four groups have one class), 0 otherwise.

    python -m labelwise.train --config=configs/fashion_mnist_simloss.py --workdir=runs/fm_simloss
    python -m labelwise.train --config=configs/fashion_mnist_simloss.py:r=0.05,seed=1 --workdir=runs/x
    python -m labelwise.train --config=configs/fashion_mnist_simloss.py:method=ce --workdir=runs/fm_ce
    python -m labelwise.train --config=configs/fashion_mnist_simloss.py:runlocal --workdir=runs/smoke

Arguments: ``method`` (simloss | ce | label_smoothing | hierarchical_soft), ``r`` (default 0.1;
study grid with small values, e.g. 0.01, 0.05, 0.1, 0.3, 0.5), ``seed``, ``runlocal``. Model and
budget as configs/fashion_mnist_ce.py. Evaluators: classification, superclass (superclass
accuracy, failed-superclass accuracy), hierarchy (mistake severity: mean height of the lowest common
ancestor of prediction and label in H-CNN's tree, classes - ``hcnn6`` - ``clothes_goods`` - root,
over the mistakes) and confusion (``confusion_test.json`` in the workdir), on ``test``.
"""

from labelwise.configs import common, fashion_mnist_common, hierarchy_simloss
from labelwise.configs.hierarchy_simloss import METHODS  # the same four arms


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("method", "r"))
  c = common.base_config(dataset="fashion_mnist", model="small_cnn",
                         method=args.get("method", "simloss"))
  if c.method not in METHODS:
    raise ValueError(f"`method` must be one of {list(METHODS)}, got {c.method!r}.")
  fashion_mnist_common.two_conv_cnn(c)
  c.data.coarse = "hcnn6"
  c.evaluators = ("classification", "superclass", "hierarchy", "confusion")
  c.hierarchy_eval = dict(levels=("hcnn6", "clothes_goods"))   # H-CNN's 3-level tree
  hierarchy_simloss.apply_arms(c, args, r=0.1)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    fashion_mnist_common.runlocal(c)
  return c
