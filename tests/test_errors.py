"""Clear errors for bad configs, before anything is compiled."""

import jax.numpy as jnp
import pytest

from labelwise.models import get_model
from labelwise.train import trainer
from labelwise.train import methods as methods_lib
from labelwise.train.methods import get_method
from labelwise.train.methods.ce import CrossEntropy
from tests.helpers import load_config


def _cfg(**kw):
  return load_config("digits_ce", "runlocal", **kw)


@pytest.mark.parametrize("key,value,match", [
    ("method", "simloss_typo", r"Unknown method 'simloss_typo'; known methods: \[.*'ce'"),
    ("model", "vgg99", r"Unknown model 'vgg99'; known models: \[.*'mlp'"),
    ("dataset", "imagenet", r"Unknown dataset 'imagenet'; known datasets: \[.*'digits'"),
    ("parallel", "pjit", r"`parallel` must be one of \['pmap', 'shard_map', 'jit'\]"),
    ("batch_size", 30, r"`batch_size` \(30\) must be divisible by the number of devices \(4\)"),
    ("eval_batch_size", 10, r"`eval_batch_size` \(10\) must be divisible"),
    ("nan_policy", "ignore", r"`nan_policy` must be one of"),
    ("num_devices", 9, r"`num_devices` must be -1 \(all\) or in \[1, 4\]"),
])
def test_bad_config_values(key, value, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    trainer.train_and_evaluate(_cfg(**{key: value}), str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # failed before doing anything


def test_locked_config_rejects_unknown_keys():
  c = _cfg()
  c.lock()
  with pytest.raises(AttributeError):
    c.batchsize = 3


def test_unknown_method_option():
  c = _cfg()
  c.ce = {"temperature": 2.0}
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['temperature'\] for method 'ce'"):
    get_method(c)


def test_unknown_optimizer(tmp_path):
  c = _cfg()
  c.optimizer.name = "lion"
  with pytest.raises(ValueError, match=r"Unknown optimizer 'lion'; known optimizers"):
    trainer.train_and_evaluate(c, str(tmp_path))


def test_get_model_lists_models():
  with pytest.raises(ValueError, match="known models"):
    get_model("nope", num_classes=3)


@methods_lib.register_method("_test_nan_at_step_8")
class _NanAtStep8(CrossEntropy):
  """CE whose loss turns NaN from the 8th step on (step index 7)."""
  def loss(self, ctx):
    out = super().loss(ctx)
    return out._replace(loss=out.loss + jnp.where(ctx.step >= 7, jnp.nan, 0.0))


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
  c = _cfg(total_steps=12, checkpoint_every=5, log_every=1, method="_test_nan_at_step_8")
  with pytest.raises(trainer.NonFiniteLossError,
                     match=r"non-finite loss or gradient at step 8 \(method '_test_nan_at_step_8'.*"
                           r"last good checkpoint \(step 5\)"):
    trainer.train_and_evaluate(c, str(tmp_path))
  saved = sorted(int(d.name) for d in (tmp_path / "checkpoints").iterdir() if d.name.isdigit())
  assert saved == [5]
  # The kept checkpoint resumes the same run (another method would be another run: refused), with
  # nan_policy=skip it finishes from step 5.
  c2 = _cfg(total_steps=12, checkpoint_every=5, log_every=1, method="_test_nan_at_step_8",
            nan_policy="skip")
  assert trainer.train_and_evaluate(c2, str(tmp_path))["step"] == 12


def test_nan_policy_skip_counts_skipped_updates(tmp_path):
  c = _cfg(total_steps=6, checkpoint_every=-1, log_every=1, nan_policy="skip")
  c.optimizer.update(name="sgd", learning_rate=1e30, momentum=0.0)
  t = trainer.Trainer(c, str(tmp_path))
  t.run()
  import numpy as np
  from labelwise.train.writers import read_metrics
  skipped = [m["train/skipped"] for m in read_metrics(str(tmp_path)) if "train/skipped" in m]
  assert sum(skipped) >= 1
  assert all(np.isfinite(np.asarray(x)).all() for x in
             __import__("jax").tree_util.tree_leaves(t.host_state.params))
