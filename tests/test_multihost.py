"""Multi-host runs on one machine: 2 processes x 2 CPU devices (gloo) train exactly like 1 x 4.

The 2-process runs are subprocesses (``tests/multihost_worker.py``) joined through a coordinator on
a free loopback port, each with a timeout. The reference is a 1-process run in this pytest process
(4 fake devices, ``tests/conftest.py``).
"""

import os

import jax
import pytest

from labelwise.train import distributed, trainer
from labelwise.train.writers import read_metrics
from tests.helpers import load_config, max_abs_diff
from tests.multihost_worker import MultiprocessError, assert_multiprocess_matches, launch

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"

DIGITS_TEST_EXAMPLES = 359  # odd: the second process's eval slice is shorter and padded


def _config(parallel, **kw):
  kw = {"total_steps": 4, "checkpoint_every": 2, "batch_size": 16, "eval_batch_size": 32,
        "log_every": 1, "parallel": parallel, **kw}
  c = load_config("digits_ce", "runlocal", **kw)
  # SGD (see test_parallel.py): Adam's first step would turn summation-order noise into lr steps.
  c.optimizer.update(name="sgd", learning_rate=0.05, momentum=0.9)
  return c


# --- settings from flags / environment (no processes started) ----------------------------------

def test_resolve_single_process_by_default():
  assert distributed.resolve(environ={}) is None
  assert distributed.resolve(environ={"SLURM_NTASKS": "1", "SLURM_JOB_ID": "7"}) is None
  assert distributed.initialize(environ={}) is False  # nothing started: single process unchanged


def test_resolve_flags_and_environment():
  s = distributed.resolve("10.0.0.1:1234", 4, 3, environ={})
  assert (s.coordinator_address, s.num_processes, s.process_id, s.source) == (
      "10.0.0.1:1234", 4, 3, "flags")
  env = {"JAX_COORDINATOR_ADDRESS": "host-0:8476", "JAX_NUM_PROCESSES": "2",
         "JAX_PROCESS_ID": "1"}
  s = distributed.resolve(environ=env)
  assert (s.coordinator_address, s.num_processes, s.process_id, s.source) == (
      "host-0:8476", 2, 1, "environment")
  # Flags win over the environment.
  assert distributed.resolve("127.0.0.1:5", 2, 0, environ=env).source == "flags"
  # A cluster JAX configures by itself: everything left to jax.distributed.initialize().
  for env in ({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"},
              {"SLURM_NTASKS": "8", "SLURM_JOB_ID": "12"}, {"OMPI_COMM_WORLD_SIZE": "2"}):
    s = distributed.resolve(environ=env)
    assert (s.coordinator_address, s.num_processes, s.process_id, s.source) == (
        None, None, None, "cluster"), env
  s = distributed.resolve("auto", environ={})  # explicit: JAX detects everything
  assert (s.coordinator_address, s.num_processes, s.process_id, s.source) == (
      None, None, None, "cluster")
  # A single-host TPU VM is not a multi-process run.
  assert distributed.resolve(environ={"TPU_WORKER_HOSTNAMES": "localhost"}) is None


@pytest.mark.parametrize("args,environ,match", [
    (("127.0.0.1:1", None, None), {}, r"missing \['--num_processes', '--process_id'\]"),
    ((None, 2, 0), {}, r"missing \['--coordinator_address'\]"),
    (("127.0.0.1", 2, 0), {}, r"`coordinator_address` must be HOST:PORT.*'127.0.0.1'"),
    (("127.0.0.1:99999", 2, 0), {}, r"`coordinator_address` has port 99999"),
    (("127.0.0.1:1", 2, 2), {}, r"`process_id` must be in \[0, 1\].*got 2"),
    (("127.0.0.1:1", 0, 0), {}, r"`num_processes` must be >= 1, got 0"),
    (("127.0.0.1:1", "two", 0), {}, r"`num_processes` must be an integer, got 'two'"),
    ((None, None, None), {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     r"missing \['JAX_COORDINATOR_ADDRESS'\]"),
    ((None, None, None), {"JAX_COORDINATOR_ADDRESS": "h:1"}, r"also set JAX_NUM_PROCESSES"),
    ((None, None, None), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2",
                          "JAX_PROCESS_ID": "-1"}, r"`JAX_PROCESS_ID` must be in \[0, 1\]"),
])
def test_resolve_rejects_bad_settings(args, environ, match):
  with pytest.raises(ValueError, match=match):
    distributed.resolve(*args, environ=environ)


# --- two processes on loopback ------------------------------------------------------------------

# Each 2-process run costs two interpreter start-ups and compilations, so `make test` runs one
# uninterrupted mode and the other mode resumed; `make test-slow` runs the other combinations.
@pytest.mark.parametrize("parallel", ["pmap", pytest.param("shard_map", marks=pytest.mark.slow),
                                      pytest.param("jit", marks=pytest.mark.slow)])
def test_two_processes_train_like_one(parallel, tmp_path):
  """Same parameters and results.json (1e-5) as a 1-process x 4-device run; written once."""
  multi, single = assert_multiprocess_matches(_config(parallel), tmp_path)
  assert multi["eval/num_examples"] == DIGITS_TEST_EXAMPLES  # every example counted once
  logged = [m["step"] for m in read_metrics(str(tmp_path / "multi")) if "train/loss" in m]
  assert logged == [1, 2, 3, 4]  # only process 0 writes metrics.jsonl


@pytest.mark.slow
def test_two_process_sweep_trains_like_one_process(tmp_path):
  """A sweep (2 seeds x 2 learning rates, replicas vmapped inside the step) on 2 processes x 2
  devices: the stacked state and every number of results.json (replicas, summary) as on 1 x 4."""
  multi, _ = assert_multiprocess_matches(
      _config("shard_map", sweep="seed=0,1;optimizer.learning_rate=0.05,0.02"), tmp_path)
  assert [r["overrides"] for r in multi["replicas"]] == [
      {"seed": s, "optimizer.learning_rate": lr} for s in (0, 1) for lr in (0.05, 0.02)]


@pytest.mark.slow
def test_two_processes_batchnorm_statistics_span_processes(tmp_path):
  """Cross-device BatchNorm (ResNet): batch statistics averaged over the devices of both processes
  give the same parameters and running statistics as one process."""
  c = _config("pmap", total_steps=2, checkpoint_every=0)
  c.model = "resnet18"
  c.model_kwargs = {"width": 4, "stage_sizes": (1, 1, 1, 1), "norm": "batch"}
  assert_multiprocess_matches(c, tmp_path)


@pytest.mark.parametrize("parallel", ["shard_map", pytest.param("pmap", marks=pytest.mark.slow)])
def test_two_process_run_resumes_from_its_checkpoint(parallel, tmp_path):
  """A 2-process run stopped after its checkpoint at step 2 resumes (settings from the environment
  this time) and ends like an uninterrupted 1-process x 4-device run (parameters, optimizer state,
  results.json to 1e-5)."""
  workdir = str(tmp_path / "multi")
  launch(_config(parallel, total_steps=2), workdir)  # stops after its checkpoint at step 2
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
  results, state = launch(_config(parallel), workdir, use_env=True)
  ref = trainer.Trainer(_config(parallel), str(tmp_path / "single"))
  ref_results = ref.run()
  assert int(state.step) == 4
  assert max_abs_diff(state.params, ref.host_state.params) < 1e-5
  assert max_abs_diff(state.opt_state, ref.host_state.opt_state) < 1e-5
  assert results == pytest.approx(ref_results, abs=1e-5)
  logged = [m["step"] for m in read_metrics(workdir) if "train/loss" in m]
  assert logged == [1, 2, 3, 4]  # resumed: appended once, nothing logged twice


def test_failed_worker_is_reported(tmp_path):
  """A worker that fails (unknown method) surfaces its error instead of hanging the test."""
  c = _config("pmap")
  c.method = "no_such_method"
  with pytest.raises(MultiprocessError, match="no_such_method"):
    launch(c, str(tmp_path / "multi"), timeout=120)
