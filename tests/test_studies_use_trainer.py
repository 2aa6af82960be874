"""Every study trains only through the trainer (issue 14): no training loop, model or loss copy of
its own in ``experiments/*/run.py``."""

import pathlib
import re

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
# What a training loop of its own needs: gradients and an optimizer.
FORBIDDEN = re.compile(r"value_and_grad|jax\.grad\(|optax\.(adam|adamw|sgd)\(|\bnn\.Module\b")


# The five studies, named (not globbed: a study that disappears or is renamed fails here instead of
# silently dropping out of the check); a new study is added to this list.
STUDIES = ("attribution", "average_k", "collision", "fierce", "simloss")


def test_the_list_names_every_study():
  assert sorted(p.parent.name for p in EXPERIMENTS.glob("*/run.py")) == sorted(STUDIES)


@pytest.mark.parametrize("study", STUDIES)
def test_study_has_no_training_loop_of_its_own(study):
  text = (EXPERIMENTS / study / "run.py").read_text()
  found = sorted({m.group(0) for m in FORBIDDEN.finditer(text)})
  assert not found, f"experiments/{study}/run.py trains by itself ({found}): use the trainer."


def test_the_check_finds_a_training_loop():
  assert FORBIDDEN.search("g = jax.grad(loss)(p)") and FORBIDDEN.search("tx = optax.adam(1e-3)")
  assert FORBIDDEN.search("class M(nn.Module):") and not FORBIDDEN.search("trainer.run()")
