r"""SimLoss on CIFAR-100 (catalog): superclass or word-embedding similarity, ResNet-18 or LeNet.

The paper (Kobs et al. 2020) trains LeNet with Adam 1e-3, batch 1024, on CIFAR-100 with a word2vec
similarity of the class names (S = max(0, (cos - b)/(1 - b)), b in {0, .1, ..., .9, .99}). We
offer that route with user-supplied embeddings (a [100, D] .npy in class-index order; the paper
dropped 4 two-word classes, we keep all 100) and our superclass similarity (20 CIFAR superclasses).

    python -m labelwise.data.prepare cifar100          # once, needs network
    python -m labelwise.train --config=configs/cifar100_simloss.py --workdir=runs/c100_simloss
    python -m labelwise.train --config=configs/cifar100_simloss.py:model=lenet,r=0.3 --workdir=...
    python -m labelwise.train \
        --config=configs/cifar100_simloss.py:similarity=embedding,embeddings=emb.npy,b=0.5 \
        --workdir=runs/c100_w2v
    python -m labelwise.train --config=configs/cifar100_simloss.py:runlocal --workdir=runs/smoke

Arguments: ``runlocal``, ``seed=N``, ``model=resnet18|lenet``, ``similarity=superclass|embedding``,
``r=R``, ``b=B``, ``embeddings=PATH``. "lenet" is the ``small_cnn`` model with LeNet widths
(conv 6 and 16 channels, dense 120): an approximation, the project has no exact LeNet-5.
Evaluators: classification + superclass (superclass accuracy, failed superclass accuracy).
"""

from labelwise.configs import common


def get_config(arg=None):
  args = common.parse_arg(arg, known=common.RUN_ARGS + ("model", "similarity", "r", "b", "embeddings"))
  model = args.get("model", "resnet18")
  similarity = args.get("similarity", "superclass")
  if model not in ("resnet18", "lenet"):
    raise ValueError(f"`model` must be 'resnet18' or 'lenet', got {model!r}.")
  if similarity not in ("superclass", "embedding"):
    raise ValueError(f"`similarity` must be 'superclass' or 'embedding', got {similarity!r}.")
  c = common.base_config(dataset="cifar100", model="resnet18" if model == "resnet18" else "small_cnn",
                         method="simloss")
  c.data.coarse = "dataset"
  c.evaluators = ("classification", "superclass")
  c.simloss = dict(similarity=similarity, reduction_factor=float(args.get("r", 0.3)),
                   lower_bound=float(args.get("b", 0.5)), embeddings=args.get("embeddings", ""),
                   epsilon=0.0)
  if model == "resnet18":
    c.model_kwargs.norm = "batch"
    c.data.augment = True
    c.batch_size = 128
    c.total_steps = 200 * 50_000 // 128
    c.eval_every = 5000
    c.checkpoint_every = 2000
    c.optimizer = common.optimizer("sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                   schedule="cosine", warmup_steps=500)
  else:  # the paper's setup
    c.model_kwargs.channels = (6, 16)
    c.model_kwargs.dense = 120
    c.batch_size = 1024
    c.total_steps = 100 * 50_000 // 1024
    c.eval_every = 500
    c.checkpoint_every = 1000
    c.optimizer = common.optimizer("adam", 1e-3)
  if "seed" in args:
    c.seed = int(args["seed"])
  if args.get("runlocal"):
    common.apply_runlocal(c, steps=4)
    c.batch_size = 8
    if model == "resnet18":
      c.model_kwargs.width = 8
  return c
