"""Every Python block of README.md runs (the usage examples stay true)."""

import os
import re

import jax
import numpy as np
import pytest

_README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
with open(_README) as f:
  _BLOCKS = re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_readme_has_the_examples():
  assert len(_BLOCKS) >= 8  # the quick import example, one per method, the NNX and Equinox loops
  for framework in ("from flax import nnx", "import equinox as eqx"):
    (loop,) = [b for b in _BLOCKS if framework in b]
    for name in ("simloss(", "collision_cross_entropy(", "fierce_loss(", "two_head_loss(",
                 "gradmask_penalty("):
      assert name in loop, (framework, name)


@pytest.mark.parametrize("index", range(len(_BLOCKS)))
def test_readme_python_block_runs(index):
  scope = {}
  exec(compile(_BLOCKS[index], f"README.md block {index}", "exec"), scope)  # noqa: S102
  if "grads" in scope:  # the method examples end with gradients: finite and not all zero
    leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(scope["grads"])]
    assert all(np.isfinite(g).all() for g in leaves)
    assert sum(float(np.abs(g).sum()) for g in leaves) > 0
