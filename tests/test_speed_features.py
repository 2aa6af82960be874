"""Speed features of the trainer: one compilation of the train and eval steps, donated state,
a background prefetcher that reads ahead while the step runs, bfloat16 compute with float32 params and
losses, and the same trajectory on 1, 2 and 4 devices."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labelwise.data import feed
from labelwise.train import step as step_lib
from labelwise.train import trainer
from tests.helpers import load_config, max_abs_diff

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"


def _config(**kw):
  kw = {"total_steps": 4, "checkpoint_every": -1, "batch_size": 16, "log_every": 1, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  c.optimizer.update(name="sgd", learning_rate=0.05, momentum=0.9)
  return c


@pytest.fixture
def trace_counter(monkeypatch):
  """Counts Python traces of the train step and of the eval forward pass (a trace = a compilation)."""
  counts = {"train": 0, "predict": 0}
  make_train, make_predict = step_lib.make_train_step, step_lib.make_predict_step

  def counting_train(*args, **kwargs):
    fn = make_train(*args, **kwargs)
    def traced(state, batch):
      counts["train"] += 1
      return fn(state, batch)
    return traced

  def counting_predict(*args, **kwargs):
    fn = make_predict(*args, **kwargs)
    def traced(params, model_state, inputs):
      counts["predict"] += 1
      return fn(params, model_state, inputs)
    return traced

  monkeypatch.setattr(step_lib, "make_train_step", counting_train)
  monkeypatch.setattr(step_lib, "make_predict_step", counting_predict)
  return counts


@pytest.mark.parametrize("parallel", ["pmap", "shard_map", "jit"])
def test_one_compilation_per_step_function_and_donated_state(parallel, trace_counter, tmp_path):
  # 4 train steps, evaluation after step 2 and at the end, each over several eval batches with a
  # padded last one (the digits test split is not a multiple of 48).
  c = _config(parallel=parallel, eval_every=2, eval_batch_size=48)
  t = trainer.Trainer(c, str(tmp_path))
  t.run()
  assert t.dataset.split("test").num_examples > 2 * 48
  assert trace_counter == {"train": 1, "predict": 1}

  # Donation: the state passed to the step is consumed (its buffers are freed and reused).
  dstate = t.parallel.put_state(t.host_state)
  batch = t.parallel.put_batch(t.host_batch(0))
  new_state, _, metrics = t.train_step(dstate, t.new_guard(), batch)
  jax.block_until_ready(metrics)
  leaves = jax.tree_util.tree_leaves(dstate.params)
  assert leaves and all(x.is_deleted() for x in leaves)
  assert not any(x.is_deleted() for x in jax.tree_util.tree_leaves(new_state.params))

  # The counter does see a recompilation: a batch of another shape traces the step again. (With
  # the device cache the run itself used the step that gathers its batch from the device-resident
  # split, `train_step_on_data`, so `train_step` was traced just above for the first time.)
  traced = trace_counter["train"]
  assert traced == (1 if t.train_step_on_data is None else 2)
  small = t.parallel.put_batch({k: v[:8] for k, v in t.host_batch(1).items()})
  jax.block_until_ready(t.train_step(new_state, t.new_guard(), small)[2])
  assert trace_counter["train"] == traced + 1


def test_prefetcher_reads_ahead_while_the_step_runs():
  made, ready = [], {s: threading.Event() for s in range(6)}

  def make_batch(s):
    made.append(s)
    ready[s].set()
    return {"step": s}

  p = feed.Prefetcher(make_batch, 0, 6, depth=2)
  try:
    assert p.next() == (0, {"step": 0})
    # While "step 0" runs (we hold the consumer here), the next two batches are made.
    assert ready[1].wait(30) and ready[2].wait(30)
    for s in range(1, 6):
      assert p.next() == (s, {"step": s})
    assert made == list(range(6))
  finally:
    p.close()


def test_prefetcher_bounded_depth_and_error_propagation():
  release = threading.Event()
  made = []

  def make_batch(s):
    if s == 3:
      release.wait(30)
      raise OSError("disk gone at step 3")
    made.append(s)
    return s

  p = feed.Prefetcher(make_batch, 0, 10, depth=2)
  try:
    assert p.next() == (0, 0)
    # Never more than `depth` finished batches wait in the queue.
    for _ in range(200):
      if len(made) == 3:
        break
      threading.Event().wait(0.05)
    assert made == [0, 1, 2]
    release.set()
    assert p.next() == (1, 1) and p.next() == (2, 2)
    with pytest.raises(OSError, match="disk gone at step 3"):
      p.next()
  finally:
    release.set()
    p.close()


def test_bfloat16_compute_keeps_float32_params_and_losses(tmp_path):
  ref = trainer.Trainer(_config(parallel="jit", num_devices=1, dtype="float32"),
                        str(tmp_path / "f32"))
  ref_results = ref.run()
  t = trainer.Trainer(_config(parallel="jit", num_devices=1, dtype="bfloat16"),
                      str(tmp_path / "bf16"))
  results = t.run()
  # Parameters and optimizer state stay float32.
  for leaf in jax.tree_util.tree_leaves((t.host_state.params, t.host_state.opt_state)):
    if np.issubdtype(np.asarray(leaf).dtype, np.floating):
      assert np.asarray(leaf).dtype == np.float32
  # The matmuls do run in bfloat16 ...
  x = t.host_batch(0)["input"]
  jaxpr = jax.make_jaxpr(lambda p: t.model.apply({"params": p}, x))(t.host_state.params)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert dots and all(v.aval.dtype == jnp.bfloat16 for e in dots for v in e.invars)
  # ... while the outputs the losses see, the loss and the metrics are float32.
  outputs = t.model.apply({"params": t.host_state.params}, x)
  assert outputs["logits"].dtype == jnp.float32
  dstate = t.parallel.put_state(t.host_state)
  _, _, metrics = t.train_step(dstate, t.new_guard(), t.parallel.put_batch(t.host_batch(0)))
  assert all(v.dtype == jnp.float32 for v in metrics.values())
  # Same trajectory up to bfloat16 rounding, but not bit-identical (the option is not ignored).
  diff = max_abs_diff(t.host_state.params, ref.host_state.params)
  assert 0 < diff < 0.05
  assert results["train/loss"] == pytest.approx(ref_results["train/loss"], rel=0.05)


def test_unknown_dtype_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"`dtype`.*'float32', 'bfloat16'.*'float16'"):
    trainer.Trainer(_config(dtype="float16"), str(tmp_path))


def test_two_devices_follow_the_one_device_trajectory(tmp_path):
  one = trainer.Trainer(_config(parallel="jit", num_devices=1, total_steps=3), str(tmp_path / "1"))
  one.run()
  two = trainer.Trainer(_config(parallel="shard_map", num_devices=2, total_steps=3),
                        str(tmp_path / "2"))
  two.run()
  assert max_abs_diff(two.host_state.params, one.host_state.params) < 1e-5


@pytest.mark.parametrize("parallel,devices", [("jit", 1), ("pmap", 4)])
def test_gradient_accumulation_keeps_the_global_batch_update(parallel, devices, tmp_path):
  """A per-example-mean loss: 2 micro-batches of 8 give the update of one batch of 16."""
  base = dict(parallel=parallel, num_devices=devices, total_steps=3)
  one = trainer.Trainer(_config(**base), str(tmp_path / "k1"))
  one_results = one.run()
  acc = trainer.Trainer(_config(grad_accum_steps=2, **base), str(tmp_path / "k2"))
  acc_results = acc.run()
  assert max_abs_diff(acc.host_state.params, one.host_state.params) < 1e-6
  assert acc_results["train/loss"] == pytest.approx(one_results["train/loss"], abs=1e-6)
  # The accumulated step is a different program (a scan over micro-batches), not the same one.
  assert "scan" in str(jax.make_jaxpr(acc.train_step)(
      acc.parallel.put_state(acc.host_state), acc.new_guard(),
      acc.parallel.put_batch(acc.host_batch(0))))


def test_gradient_accumulation_must_divide_the_per_device_batch(tmp_path):
  with pytest.raises(ValueError, match=r"`grad_accum_steps`.*batch_size 16 / 4 devices.*got 3"):
    trainer.Trainer(_config(grad_accum_steps=3), str(tmp_path))


def test_pure_jax_fallback_resnet_has_the_models_parameter_shapes():
  """benchmarks/resnet_purejax.py (gpu.sh's fallback) is the same network as models.ResNet18."""
  import importlib.util
  import os
  from labelwise.models import get_model
  path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "resnet_purejax.py")
  spec = importlib.util.spec_from_file_location("resnet_purejax", path)
  purejax = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(purejax)
  x = jnp.zeros((2, 32, 32, 3))
  flax_params = jax.eval_shape(
      lambda: get_model("resnet18", num_classes=10, width=4).init(jax.random.PRNGKey(0), x))["params"]
  pure_params = jax.eval_shape(lambda: purejax.init(jax.random.PRNGKey(0), width=4))
  shapes = lambda t: sorted(tuple(l.shape) for l in jax.tree_util.tree_leaves(t))  # noqa: E731
  assert shapes(pure_params) == shapes(flax_params)
  logits = jax.eval_shape(lambda: purejax.apply(purejax.init(jax.random.PRNGKey(0), 4), x))
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
