r"""Self-labeled clustering of MNIST-1D (offline, 5000 signals, train+test), K = 10, 1-D CNN.

    python -m labelwise.train --config=configs/mnist1d_cluster.py --workdir=runs/mnist1d_cluster
    python -m labelwise.train --config=configs/mnist1d_cluster.py:method=mi_cluster --workdir=runs/m1mi
    python -m labelwise.train --config=configs/mnist1d_cluster.py:runlocal --workdir=runs/smoke

Args as in ``configs/digits_cluster.py``. MNIST-1D is hard to cluster without augmentation: expect
accuracies far below the supervised ~94%.
"""

from labelwise.configs import collision_common, common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS + ("model",))
  c = collision_common.cluster_config(args, dataset="mnist1d",
                                      model=args.get("model", "small_cnn"))
  if c.model == "small_cnn":
    c.model_kwargs.channels = (32, 64)
    c.model_kwargs.dense = 128
  else:
    c.model_kwargs.hidden = (256,)
  c.data.train_split = "train+test"
  c.data.eval_split = "train+test"
  c.batch_size = 256
  c.eval_batch_size = 500
  c.total_steps = 1000
  c.log_every = 50
  c.checkpoint_every = 0
  c.optimizer = common.optimizer("adam", 1e-3, weight_decay=1e-4)
  if args.get("runlocal"):
    common.apply_runlocal(c)
    c.eval_batch_size = 500
  return c
