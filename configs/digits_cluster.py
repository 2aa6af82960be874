r"""Self-labeled clustering of all 1797 scikit-learn digits (offline), K = 10, MLP.

    python -m labelwise.train --config=configs/digits_cluster.py --workdir=runs/digits_collision_cluster
    python -m labelwise.train --config=configs/digits_cluster.py:method=shannon_cluster --workdir=runs/dsc
    python -m labelwise.train --config=configs/digits_cluster.py:method=mi_cluster --workdir=runs/dmi
    python -m labelwise.train --config=configs/digits_cluster.py:pseudo=dataset,update_every=25 --workdir=runs/dds
    python -m labelwise.train --config=configs/digits_cluster.py:runlocal --workdir=runs/smoke

Args: ``method`` (collision_cluster | shannon_cluster | mi_cluster), ``lam`` (fairness weight, 3),
``fairness`` (strong | classic), ``pseudo`` (batch | dataset), ``update_every``, ``seed``.
Training and evaluation both use train+test (clustering is unsupervised; labels only score it).
Evaluators: ``clustering`` (ACC with Hungarian matching, NMI, ARI); add ``kmeans_baseline`` with
``--config.evaluators='("clustering","kmeans_baseline")'``. Method sheet pilot: all losses ~0.73-0.77,
k-means on raw pixels ~0.79.
"""

from labelwise.configs import collision_common, common


def get_config(arg=None):
  args = common.parse_arg(arg, known=collision_common.CLUSTER_ARGS)
  c = collision_common.cluster_config(args, dataset="digits", model="mlp")
  c.model_kwargs.hidden = (256,)
  c.data.train_split = "train+test"
  c.data.eval_split = "train+test"
  c.batch_size = 256
  c.eval_batch_size = 256
  c.total_steps = 600
  c.log_every = 50
  c.checkpoint_every = 0
  c.optimizer = common.optimizer("adam", 1e-3, weight_decay=1e-4)
  if args.get("runlocal"):
    common.apply_runlocal(c)
    c.eval_batch_size = 256
  return c
