"""Shared pieces of the benchmarks: environment line, markdown tables, results file, the JAX step.

The JAX step timed here is the project's own: ``train.step.make_train_step`` with the ``ce`` method,
``train.optim.make_optimizer`` and ``Parallel(...).compile_train_step`` (donated state), exactly what
``train_and_evaluate`` runs.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.md")


def loadavg() -> str:
  try:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def environment() -> str:
  """One line: when, where, which versions, how loaded the machine was."""
  import jax
  parts = [datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           f"python {platform.python_version()}", f"jax {jax.__version__}",
           f"backend {jax.default_backend()}",
           f"devices {jax.device_count()} x {jax.devices()[0].device_kind}",
           f"cpus {os.cpu_count()}", f"loadavg(1/5/15 min) {loadavg()}"]
  torch = sys.modules.get("torch")
  if torch is not None:
    parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
  return ", ".join(parts)


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def report(title: str, text: str, *, append: bool = True, out_dir: Optional[str] = None) -> None:
  """Prints ``text`` under ``title`` and appends it to ``benchmarks/results.md`` (and ``out_dir``)."""
  block = f"\n## {title}\n\n{environment()}\n\n{text}\n"
  print(block, flush=True)
  targets = [RESULTS] if append else []
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    targets.append(os.path.join(out_dir, "results.md"))
  for path in targets:
    with open(path, "a") as f:
      f.write(block)


def peak_rss_mb() -> float:
  """Peak resident memory of this process (MiB)."""
  r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return r / 1024 if sys.platform != "darwin" else r / 2**20


def rss_mb() -> float:
  """Current resident memory of this process (MiB)."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
  except OSError:
    return float("nan")


def max_abs_diff(a, b) -> float:
  import jax
  import numpy as np
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(la, lb))


def median(xs: List[float]) -> float:
  return statistics.median(xs) if xs else float("nan")


# --- the JAX step ------------------------------------------------------------------------------
MODEL_KWARGS: Dict[str, dict] = {
    "mlp": dict(hidden=(128, 128)),
    "small_cnn": dict(channels=(32, 64), dense=128),
    "resnet18": dict(width=64, stage_sizes=(2, 2, 2, 2), norm="batch"),
}
INPUT_SHAPES = {"mlp": (40,), "small_cnn": (28, 28, 1), "resnet18": (32, 32, 3)}
DATASET_OF = {"mlp": "mnist1d", "small_cnn": "28x28x1", "resnet18": "32x32x3"}
NUM_CLASSES = 10
LEARNING_RATE = 1e-3


def jax_step(model_name: str, batch_size: int, *, dtype: str = "float32", parallel: str = "jit",
             devices=None, model_kwargs: Optional[dict] = None, input_shape=None, seed: int = 0,
             method: str = "ce", method_options: Optional[dict] = None,
             extra_batch: Optional[Dict[str, object]] = None):
  """(compiled_step, state, batch, compile_seconds, host_batch): the trainer's step with Adam.

  ``method`` (default ``ce``) is looked up in the trainer's registry with ``method_options`` as
  ``config.<method>``; the model gets the method's extra heads, as in ``train_and_evaluate``.
  ``extra_batch`` adds fields (e.g. ``mask``) to the random batch.
  ``compiled_step(state, batch) -> (state, metrics)`` donates ``state``.
  """
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np

  from labelwise.configs import common
  from labelwise.models import get_model
  from labelwise.train import methods as methods_lib
  from labelwise.train import optim
  from labelwise.train import step as step_lib
  from labelwise.train.methods.base import RunInfo
  from labelwise.train.state import create_state

  devices = list(devices or jax.devices()[:1])
  config = common.base_config(dataset="digits", model=model_name, method=method)
  if method_options:
    config[method] = ml_collections.ConfigDict(dict(method_options))
  config.optimizer = common.optimizer("adam", LEARNING_RATE)
  input_shape = tuple(input_shape or INPUT_SHAPES[model_name])
  info = RunInfo(num_classes=NUM_CLASSES, num_fine_classes=NUM_CLASSES, num_coarse_classes=None,
                 num_train_examples=batch_size, input_shape=input_shape)
  par = step_lib.Parallel(parallel, devices)
  kwargs = dict(MODEL_KWARGS[model_name] if model_kwargs is None else model_kwargs)
  config.model_kwargs = ml_collections.ConfigDict(dict(kwargs))  # what methods read (FIERCE)
  method = methods_lib.get_method(config)
  if model_name == "resnet18" and par.axis_name is not None:
    kwargs["bn_axis_name"] = par.axis_name
  kwargs["dtype"] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
  heads = method.extra_heads(info)
  if heads:
    kwargs["extra_heads"] = {**dict(kwargs.get("extra_heads") or {}), **heads}
  model = get_model(model_name, num_classes=NUM_CLASSES, **kwargs)
  tx = optim.make_optimizer(ml_collections.ConfigDict(config.optimizer), 1000)
  rng = np.random.default_rng(seed)
  host_batch = {
      "input": rng.standard_normal((batch_size,) + input_shape).astype(np.float32),
      "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
      "index": np.arange(batch_size, dtype=np.int32)}
  host_batch.update(extra_batch or {})
  state = create_state(model, tx, method, info, seed=seed, sample_input=host_batch["input"][:1])
  step = par.compile_train_step(step_lib.make_train_step(method, model.apply, tx,
                                                         axis_name=par.axis_name))
  dstate = par.put_state(jax.device_get(state))
  batch = par.put_batch(host_batch)
  t0 = time.perf_counter()
  if parallel == "pmap":  # no AOT lowering for pmap: time the first call
    dstate, metrics = step(dstate, batch)
    jax.block_until_ready(metrics)
    compiled = step
  else:
    compiled = step.lower(dstate, batch).compile()
  compile_s = time.perf_counter() - t0
  return compiled, dstate, batch, compile_s, host_batch
