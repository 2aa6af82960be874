r"""Soft labels from the hierarchy (Bertinetto et al. 2020) on hierarchy_gaussians: SimLoss baseline.

    python -m labelwise.train --config=configs/hierarchy_hierarchical_soft.py --workdir=runs/hs
    python -m labelwise.train --config=configs/hierarchy_hierarchical_soft.py:runlocal --workdir=runs/s

Same arguments as configs/hierarchy_simloss.py; ``--config.hierarchical_soft.beta`` sets the sharpness.
"""

from labelwise.configs import hierarchy_simloss


def get_config(arg=None):
  return hierarchy_simloss.get_config(
      ",".join(a for a in ((arg or ""), "method=hierarchical_soft") if a))
