"""Shared config parts. Every config has the keys below; users override them on the command line
(``--config.batch_size=64``) and the config is locked, so a misspelt key is an error."""

from __future__ import annotations

from typing import Iterable, Optional

import ml_collections

RUN_ARGS = ("runlocal", "seed")  # the ``:arg`` tokens every config knows


def parse_arg(arg: Optional[str], *, known: Iterable[str]) -> dict:
  """``"runlocal,seed=3"`` -> ``{"runlocal": True, "seed": "3"}`` (big_vision style ``:arg`` variants).

  ``known`` is the config's own list of token names (``RUN_ARGS`` plus its variants); any other
  token is an error that lists them, so that a misspelt variant (``:runloca``) cannot silently run
  the full config.
  """
  known = tuple(known)
  out = {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    if "=" in part:
      k, v = part.split("=", 1)
      out[k.strip()] = v.strip()
    else:
      out[part] = True
  unknown = [k for k in out if k not in known]
  if unknown:
    raise ValueError(f"unknown config argument{'s' if len(unknown) > 1 else ''} "
                     f"{', '.join(repr(k) for k in unknown)} in {arg!r}; this config knows: "
                     f"{', '.join(sorted(set(known)))} (e.g. --config=<file>.py:runlocal,seed=1).")
  return out


def optimizer(name="adam", learning_rate=1e-3, **kw) -> ml_collections.ConfigDict:
  opt = dict(name=name, learning_rate=learning_rate, schedule="constant", warmup_steps=0,
             momentum=0.9, nesterov=False, weight_decay=0.0,
             exclude_from_weight_decay="bias_and_norm", grad_clip_norm=0.0,
             boundaries=(0.5, 0.75), decay_factor=0.1, final_fraction=0.0, b1=0.9, b2=0.999)
  opt.update(kw)
  return ml_collections.ConfigDict(opt)


def base_config(*, dataset: str, model: str, method: str = "ce") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.data = ml_collections.ConfigDict(dict(
      data_dir="",            # "" -> $TFDS_DATA_DIR or ~/tensorflow_datasets
      manual_dir="",          # source files of datasets built from them (fashion_mnist); "" ->
                              # <data_dir>/downloads/manual, then the dataset's own fallback
      train_split="train",    # any TFDS split string, e.g. "train[:90%]"
      eval_split="test",
      validation_split="",    # for evaluators that calibrate (e.g. "train[90%:]")
      validation_fraction=0.0,  # > 0: a fixed stratified validation split carved from the
                                # training split (which then excludes it); sweep_select uses it
      coarse="",              # "", "dataset", "halves", "parity", "pairs", a name of the
                              # dataset's own (fashion_mnist: "hcnn6", "clothes_goods"), or ints
      train_on="label",       # or "coarse_label" (the fine label is kept as fine_label)
      augment=False,          # random crop + flip for images
      cache_limit=200_000,    # splits up to this many examples are read into memory once
      device_cache="auto",    # cached train split on the devices, batches gathered there:
                              # "auto" (small splits, no augmentation, 1 process, jit/shard_map),
                              # "on" (required, error if not possible) or "off"
  ))
  c.model = model
  c.model_kwargs = ml_collections.ConfigDict()
  c.dtype = "float32"         # model compute dtype ("bfloat16" for mixed precision); losses in float32
  c.conv_impl = "auto"        # conv models: "auto" (patch-matmul kernel gradients on CPU), "xla",
                              # or "patches" (all of it as patch matmuls: vmapped sweeps on CPU)
  c.method = method
  c.parallel = "pmap"         # "pmap" | "shard_map" | "jit"
  c.num_devices = -1          # -1: all devices
  c.seed = 0
  c.batch_size = 128          # global batch, over all devices and hosts
  c.grad_accum_steps = 1      # >1: the batch in that many micro-batches (same global batch/update)
  c.eval_batch_size = 0       # 0: batch_size
  c.total_steps = 1000
  c.log_every = 50
  c.host_sync_every = 0       # steps between host syncs (metrics stay on the device meanwhile);
                              # 0: the log interval, at most 20 steps or 2 calls
  c.steps_per_call = 0        # training steps per compiled call (batches gathered on the devices);
                              # 0 (auto): 16 when a step's forward pass is <= 20 MFLOP, else 1
  c.eval_every = 0            # 0: evaluate at the end only
  c.checkpoint_every = 500    # 0: only at the end; -1: never
  c.keep_checkpoints = 3
  c.nan_policy = "stop"       # "stop": raise at the first non-finite loss; "skip": skip the update
  c.evaluators = ()           # () -> the method's defaults
  c.progress_bar = True
  c.tensorboard = True
  c.optimizer = optimizer()
  # Sweeps (labelwise.train.sweep): "key=v1,v2;key2=..." trains every combination as a replica of
  # one compiled program; sweep_select="val/<metric>:max" (or :min) picks the point on validation.
  c.sweep = ""
  c.sweep_select = ""
  return c


def override(c: ml_collections.ConfigDict, **dotted) -> ml_collections.ConfigDict:
  """Sets ``c`` fields from keyword arguments whose ``__`` separates levels (``data__augment=True``)."""
  for key, value in dotted.items():
    node, parts = c, key.split("__")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return c


def apply_runlocal(c: ml_collections.ConfigDict, *, steps: int = 20) -> ml_collections.ConfigDict:
  """Shrinks a config to a smoke run that finishes in seconds on a CPU."""
  c.total_steps = steps
  c.log_every = max(1, steps // 4)
  c.checkpoint_every = max(1, steps // 2)
  c.eval_every = 0
  c.batch_size = min(c.batch_size, 32)
  c.progress_bar = False
  return c
