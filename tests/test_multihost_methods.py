"""Cross-device statistics of the methods span all processes: 2 processes x 2 devices == 1 x 4.

Collision clustering (EM column marginals psum-ed), two-head average-K (global top-k threshold) and
FIERCE (global code histogram) each end with the same parameters, buffers and results.json as the
1-process run. Each launches two subprocesses on loopback (gloo), so they are marked slow
(`make test-slow`); `tests/test_multihost.py` runs the plain 2-process test in `make test`.
"""

import jax
import pytest

from tests.helpers import load_config
from tests.multihost_worker import assert_multiprocess_matches

assert jax.device_count() == 4, "tests/conftest.py must set 4 fake CPU devices"


def _config(module, arg, parallel):
  c = load_config(module, arg, total_steps=3, checkpoint_every=0, batch_size=32,
                  eval_batch_size=32, log_every=1, parallel=parallel)
  # SGD (see test_parallel.py): Adam's first step would turn summation-order noise into lr steps.
  c.optimizer.update(name="sgd", learning_rate=0.05, momentum=0.9, schedule="constant",
                     warmup_steps=0)
  return c


@pytest.mark.slow
@pytest.mark.parametrize("module,arg", [
    ("digits_cluster", "runlocal"),                 # collision_cluster: EM over the global batch
    ("gaussians_avgk", "method=two_head,runlocal"),  # average-K pseudo-labels: global threshold
    ("digits_fierce", "runlocal"),                  # FIERCE: histogram over the global batch
])
def test_method_statistics_span_processes(module, arg, tmp_path):
  assert_multiprocess_matches(_config(module, arg, "pmap"), tmp_path)
