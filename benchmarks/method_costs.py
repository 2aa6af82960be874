r"""What each method costs as device time: its loss against optax's, and its training step against CE.

Two tables, every ratio measured side by side in one process with the programs alternating in rounds
(so that a change in machine load hits both sides):

1. **Losses** (value + gradient w.r.t. the logits), timed as ``--calls`` calls inside ONE jitted
   ``lax.scan``, so that dispatch and ``block_until_ready`` are paid once per program, not per call.
   Each scan iteration takes a gradient step on the logits it differentiates (``z <- z - 1e-3 g``) and
   accumulates the loss, so nothing is loop-invariant and XLA cannot hoist the loss out of the loop;
   the same update is in both programs of a pair. Pairs (goal): SimLoss vs
   ``optax.softmax_cross_entropy_with_integer_labels`` (<= 1.3x), collision cross-entropy vs
   ``optax.softmax_cross_entropy`` on the same soft targets (<= 1.2x), two-head average-K loss
   (both heads) vs optax integer CE on the softmax head (<= 1.3x), and the two-head loss against
   itself with the pseudo-label selection it had before (``lax.top_k`` on the gathered non-label
   scores, kept in this file as ``old_two_head_loss``; <= 1.0x: not slower).
2. **Training steps**: the trainer's own compiled step (``_common.jax_step``: method from the
   registry, Adam, donated state) for ResNet-18 at ``--step_batch`` (32 on CPU), one program per
   method, each step blocking on its metrics; ratio of medians to the CE step. Goals: SimLoss,
   collision soft, two-head <= 1.05x, FIERCE <= 1.1x; attribution penalties (ActDiff, GradMask, RRR:
   double backprop) reported.

    python benchmarks/method_costs.py                 # full (minutes on 2 CPU cores)
    python benchmarks/method_costs.py --quick         # seconds: tiny sizes, not appended
    python benchmarks/method_costs.py --skip_steps --losses=two_head,two_head_selection
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# --- losses as scanned programs ----------------------------------------------------------------


def scanned(loss_fn: Callable, calls: int):
  """jit(f)(z, *aux) -> (z_final, summed loss): ``calls`` value+grad evaluations in one lax.scan.

  ``z`` is the pytree the loss is differentiated against (an array, or a tuple for two heads).
  """
  import jax
  import jax.numpy as jnp

  def mean_loss(z, *aux):
    return jnp.mean(loss_fn(z, *aux))

  def program(z, *aux):
    def body(carry, _):
      z, acc = carry
      val, g = jax.value_and_grad(mean_loss)(z, *aux)
      z = jax.tree_util.tree_map(lambda a, b: a - 1e-3 * b, z, g)
      return (z, acc + val), None
    (z, acc), _ = jax.lax.scan(body, (z, jnp.zeros((), jnp.float32)), None, length=calls)
    return z, acc

  return jax.jit(program)


# --- the pseudo-label selection before the uint32-key bisection (a peer row only) ---------------


def old_two_head_loss(softmax_logits, multilabel_logits, labels, *, k):
  """``labelwise.two_head_loss`` (rule B, no ``axis_name``) with the pseudo-label selection it had
  before the uint32-key selection: the non-label scores gathered into ``[B, C-1]``
  (``take_along_axis``), ``lax.top_k`` over them (a per-row top-n first when n < C-1), the indices
  scattered into a mask and back into ``[B, C]``. Same result; kept here to time against."""
  import jax
  import jax.numpy as jnp

  from labelwise import losses
  from labelwise.losses import average_k as ak

  def local_top(scores, n):
    rows, cols = scores.shape
    n_local = min(n, rows * cols)
    if rows > 1 and n < cols:
      row_vals, col = jax.lax.top_k(scores, n)
      flat_idx = (jnp.arange(rows, dtype=jnp.int32)[:, None] * cols + col).reshape(-1)
      vals, pos = jax.lax.top_k(row_vals.reshape(-1), n_local)
      return vals, flat_idx[pos]
    return jax.lax.top_k(scores.reshape(-1), n_local)

  def pseudo_labels(scores, labels):
    batch, num_classes = scores.shape
    n = ak.num_pseudo_positives(k, batch, num_classes)
    cols = jnp.arange(num_classes - 1, dtype=jnp.int32)[None, :]
    other_idx = cols + (cols >= labels[:, None]).astype(jnp.int32)
    other = jnp.take_along_axis(scores, other_idx, axis=1)
    _, idx = local_top(other, n)
    other_mask = jnp.zeros((other.size,), bool).at[idx].set(True).reshape(other.shape)
    rows = jnp.arange(batch)[:, None]
    mask = jnp.zeros((batch, num_classes), bool).at[rows, other_idx].set(other_mask)
    return (mask | jax.nn.one_hot(labels, num_classes, dtype=bool)).astype(jnp.float32)

  logp = jax.nn.log_softmax(softmax_logits.astype(jnp.float32), axis=-1)
  labels = labels.astype(jnp.int32)
  ce = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  pseudo = pseudo_labels(jax.lax.stop_gradient(logp), labels)
  return ce + losses.mean_binary_cross_entropy(multilabel_logits, pseudo)


def plain_bce_two_head_loss(softmax_logits, multilabel_logits, labels, *, k):
  """``labelwise.two_head_loss`` (rule B) with the BCE it had before its hand-written derivative:
  ``jax.nn.softplus(z) - t z``, differentiated by JAX (softplus is ``logaddexp(z, 0)``). Same
  values; kept here to time against."""
  import jax
  import jax.numpy as jnp

  from labelwise.losses import average_k as ak

  logp = jax.nn.log_softmax(softmax_logits.astype(jnp.float32), axis=-1)
  labels = labels.astype(jnp.int32)
  ce = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  pseudo = ak.average_k_pseudo_labels(jax.lax.stop_gradient(logp), labels, k=k)
  z = multilabel_logits.astype(jnp.float32)
  return ce + jnp.mean(jax.nn.softplus(z) - pseudo * z, axis=-1)


def loss_pairs(batch: int, classes: int, seed: int = 0):
  """[(key, pair name, goal, peer name, peer fn, method name, method fn, z, aux)] on shared
  inputs; ``key`` is what ``--losses`` selects."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from labelwise import losses

  rng = np.random.default_rng(seed)
  z = jnp.asarray(rng.standard_normal((batch, classes)).astype(np.float32) * 2.0)
  zm = jnp.asarray(rng.standard_normal((batch, classes)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, classes, batch).astype(np.int32))
  s = losses.ordinal_similarity(classes, reduction_factor=0.5)
  # Soft targets with full support (the harder case for collision CE: no zero entries to skip).
  t = jax.nn.softmax(jnp.asarray(rng.standard_normal((batch, classes)).astype(np.float32)), -1)

  def optax_int(z, y):
    return optax.softmax_cross_entropy_with_integer_labels(z, y)

  def optax_int_two(zz, y):
    return optax.softmax_cross_entropy_with_integer_labels(zz[0], y)

  def optax_ce_bce(zz, yt):
    # What the two heads cost without the pseudo-label selection: CE + BCE against fixed targets.
    y, t01 = yt
    return (optax.softmax_cross_entropy_with_integer_labels(zz[0], y)
            + jnp.mean(optax.sigmoid_binary_cross_entropy(zz[1], t01), axis=-1))

  def two_head(zz, y):
    return losses.two_head_loss(zz[0], zz[1], y, k=2.0)

  def old_two_head(zz, y):
    return old_two_head_loss(zz[0], zz[1], y, k=2.0)

  def plain_bce_two_head(zz, y):
    return plain_bce_two_head_loss(zz[0], zz[1], y, k=2.0)

  # Fixed 0/1 targets with the two-head loss's count of positives (k = 2: 2 per row on average).
  t01 = jnp.asarray((rng.uniform(size=(batch, classes)) < 2.0 / classes).astype(np.float32))

  return [
      ("simloss", f"SimLoss, C={classes}", 1.3, "optax integer CE", optax_int, "labelwise.simloss",
       lambda z, y, s: losses.simloss(z, y, s), z, ((y,), (y, s))),
      ("collision", f"collision CE, C={classes}", 1.2, "optax soft CE", optax.softmax_cross_entropy,
       "labelwise.collision_cross_entropy", losses.collision_cross_entropy, z, ((t,), (t,))),
      ("two_head", f"two-head (k=2), C={classes}", 1.3, "optax integer CE (softmax head)",
       optax_int_two, "labelwise.two_head_loss (both heads)", two_head, (z, zm), ((y,), (y,))),
      ("two_head_selection", f"two-head (k=2), C={classes}", 1.0,
       "two-head, old top_k selection", old_two_head, "labelwise.two_head_loss (both heads)",
       two_head, (z, zm), ((y,), (y,))),
      ("two_head_heads", f"two-head (k=2), C={classes}", 1.3,
       "optax CE (softmax head) + optax sigmoid BCE (fixed targets)",
       lambda zz, yt: optax_ce_bce(zz, yt), "labelwise.two_head_loss (both heads)",
       two_head, (z, zm), (((y, t01),), (y,))),
      ("two_head_bce", f"two-head (k=2), C={classes}", 1.0,
       "two-head, jax.nn.softplus BCE", plain_bce_two_head, "labelwise.two_head_loss (both heads)",
       two_head, (z, zm), ((y,), (y,))),
  ]


LOSS_KEYS = ("simloss", "collision", "two_head", "two_head_selection", "two_head_heads",
             "two_head_bce")


def time_program(fn, args, warm: bool = False) -> float:
  import jax
  if warm:
    jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def profile_program(fn, args, top: int = 8):
  """[(fusion or op, what it computes, thread-ms per program run)]: an XLA:CPU op profile of one
  run of the compiled program, events attributed to HLO instructions (profile_cpu.hlo_ops)."""
  import collections
  import tempfile

  import jax

  import profile_cpu
  names = profile_cpu.hlo_ops(fn.lower(*args).compile().as_text())
  tmp = tempfile.mkdtemp()
  jax.block_until_ready(fn(*args))
  jax.profiler.start_trace(tmp)
  jax.block_until_ready(fn(*args))
  jax.profiler.stop_trace()
  by_op = collections.Counter()
  for name, duration_ns in profile_cpu.xla_op_events(tmp, names):
    op_name = names[name][1].replace("jit(program)/while/body/", "")
    by_op[(name, op_name[-60:])] += duration_ns / 1e6
  return [(ev, op, ms) for (ev, op), ms in by_op.most_common(top)]


def loss_table(batch: int, classes_list: Sequence[int], calls: int, rounds: int,
               profile: bool = False, keys: Sequence[str] = LOSS_KEYS) -> str:
  rows, profiles = [], []
  for classes in classes_list:
    for key, name, goal, peer_name, peer, meth_name, meth, z, (peer_aux, meth_aux) in \
        loss_pairs(batch, classes):
      if key not in keys:
        continue
      progs = [(scanned(peer, calls), (z,) + peer_aux), (scanned(meth, calls), (z,) + meth_aux)]
      for fn, args in progs:
        time_program(fn, args, warm=True)  # compile + one run
      if key in ("two_head_selection", "two_head_bce"):  # the same losses along the scan
        import numpy as np
        np.testing.assert_allclose(progs[0][0](*progs[0][1])[1], progs[1][0](*progs[1][1])[1],
                                   rtol=1e-6, err_msg=f"{key}: old and new two-head loss disagree")
      times: List[List[float]] = [[], []]
      for _ in range(rounds):
        for i, (fn, args) in enumerate(progs):
          times[i].append(time_program(fn, args))
      tp, tm = _common.median(times[0]), _common.median(times[1])
      ratio = tm / tp
      rows.append([name, batch, peer_name, f"{1e6 * tp / calls:.0f}", meth_name,
                   f"{1e6 * tm / calls:.0f}", f"{ratio:.2f}x",
                   f"{min(times[1]) / min(times[0]):.2f}x", f"<= {goal}x",
                   "yes" if ratio <= goal else "NO", _common.loadavg()])
      print(rows[-1], flush=True)
      if profile and ratio > goal:
        for label, (fn, args) in ((peer_name, progs[0]), (meth_name, progs[1])):
          ops = profile_program(fn, args)
          profiles.append(f"**{name}, {label}** (largest ops of one {calls}-call program, "
                          f"thread-ms):\n\n" + _common.table(
                              ["HLO op", "JAX op", "thread-ms"],
                              [[f"`{e}`", f"`{o}`", f"{ms:.2f}"] for e, o, ms in ops]))
  headers = ["loss", "batch", "peer", "peer us/call", "method", "method us/call",
             "ratio (median)", "ratio (min)", "goal", "met", "loadavg"]
  note = (f"value + gradient w.r.t. the logits, {calls} calls inside one jitted `lax.scan` per "
          f"program (a gradient step on the logits between calls), median (and min) over {rounds} "
          f"alternating rounds; us/call = program time / {calls}.")
  text = _common.table(headers, rows) + "\n\n" + note
  if profiles:
    text += "\n\nProfiles of the pairs that miss their goal:\n\n" + "\n\n".join(profiles)
  return text


# --- training steps ----------------------------------------------------------------------------

# (label, method, options, goal or None)
STEP_METHODS: Tuple[Tuple[str, str, Dict, object], ...] = (
    ("CE", "ce", {}, None),
    ("SimLoss (ordinal S)", "simloss", {}, 1.05),
    ("collision soft (mix targets)", "collision_soft", {"targets": "mix", "noise_level": 0.3}, 1.05),
    ("two-head average-K (k=2)", "two_head", {"k": 2.0}, 1.05),
    ("FIERCE (codes entropy)", "fierce", {}, 1.1),
    ("ActDiff", "actdiff", {}, None),
    ("GradMask (double backprop)", "gradmask", {}, None),
    ("RRR (double backprop)", "rrr", {}, None),
)


def _mask_batch(batch: int, shape) -> Dict[str, object]:
  import numpy as np
  h, w = shape[:2]
  m = np.zeros((batch, h, w), np.float32)
  m[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
  return {"mask": m}


def step_table(model: str, batch: int, steps: int, rounds: int,
               methods: Sequence[str], model_kwargs=None) -> str:
  import jax
  shape = _common.INPUT_SHAPES[model]
  chosen = [m for m in STEP_METHODS if m[1] in methods]
  progs = []
  for label, method, options, goal in chosen:
    extra = _mask_batch(batch, shape) if method in ("actdiff", "gradmask", "rrr") else None
    compiled, state, dbatch, compile_s, _ = _common.jax_step(
        model, batch, method=method, method_options=options, extra_batch=extra,
        model_kwargs=model_kwargs)
    state, metrics = compiled(state, dbatch)  # warm-up
    jax.block_until_ready(metrics)
    progs.append([label, goal, compiled, state, dbatch, compile_s, []])
    print(f"compiled {label}: {compile_s:.1f} s", flush=True)
  for _ in range(rounds):
    for p in progs:
      for _ in range(steps):
        t0 = time.perf_counter()
        p[3], metrics = p[2](p[3], p[4])
        jax.block_until_ready(metrics)
        p[6].append(time.perf_counter() - t0)
  ce_med = _common.median(progs[0][6])
  ce_min = min(progs[0][6])
  rows = []
  for label, goal, _, _, _, compile_s, ts in progs:
    med = _common.median(ts)
    ratio = med / ce_med
    rows.append([label, model, batch, f"{compile_s:.1f}", f"{1e3 * med:.1f}", f"{ratio:.3f}x",
                 f"{min(ts) / ce_min:.3f}x", "-" if goal is None else f"<= {goal}x",
                 "-" if goal is None else ("yes" if ratio <= goal else "NO")])
  headers = ["method", "model", "batch", "compile s", "ms/step (median)", "/ CE step (median)",
             "/ CE step (min)", "goal", "met"]
  note = (f"The trainer's compiled step (Adam, donated state, blocking on the metrics), median "
          f"(and min) over {rounds} rounds x {steps} steps after one warm-up step; the methods "
          f"alternate within every round; loadavg at the end {_common.loadavg()}.")
  return _common.table(headers, rows) + "\n\n" + note


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=4096, help="loss batch")
  p.add_argument("--classes", default="100,1000")
  p.add_argument("--calls", type=int, default=100, help="loss calls per scanned program")
  p.add_argument("--loss_rounds", type=int, default=7)
  p.add_argument("--losses", default=",".join(LOSS_KEYS),
                 help="comma list of the loss pairs to time (two_head_selection: the two-head "
                      "loss against its old lax.top_k selection; two_head_heads: against optax CE + "
                      "BCE on its two heads; two_head_bce: against its jax.nn.softplus BCE)")
  p.add_argument("--step_model", default="resnet18")
  p.add_argument("--step_batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=2, help="timed steps per round and method")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--methods", default=",".join(m[1] for m in STEP_METHODS))
  p.add_argument("--skip_steps", action="store_true")
  p.add_argument("--profile", action="store_true",
                 help="an XLA op profile of both programs of every loss pair that misses its goal")
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  classes = [int(c) for c in a.classes.split(",") if c]
  methods = [m for m in a.methods.split(",") if m]
  known = [m[1] for m in STEP_METHODS]
  for m in methods:
    if m not in known:
      p.error(f"--methods: unknown method {m!r}; expected a comma list from {known}")
  loss_keys = [k for k in a.losses.split(",") if k]
  for k in loss_keys:
    if k not in LOSS_KEYS:
      p.error(f"--losses: unknown loss pair {k!r}; expected a comma list from {list(LOSS_KEYS)}")
  if "ce" not in methods:
    methods = ["ce"] + methods
  model_kwargs = None
  if a.quick:
    a.batch, classes, a.calls, a.loss_rounds = 64, [10], 3, 1
    a.step_model, a.step_batch, a.steps, a.rounds = "small_cnn", 4, 1, 1
    model_kwargs = dict(channels=(4, 8), dense=8)
  text = "### Losses (value + grad, one scanned program per loss)\n\n"
  text += loss_table(a.batch, classes, a.calls, a.loss_rounds, profile=a.profile, keys=loss_keys)
  if not a.skip_steps:
    text += "\n\n### Training steps against the CE step\n\n"
    text += step_table(a.step_model, a.step_batch, a.steps, a.rounds, methods,
                       model_kwargs=model_kwargs)
  _common.report("Method costs as device time (benchmarks/method_costs.py)", text,
                 append=not a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
  main()
