r"""SORD soft ordinal targets (Diaz & Marathe 2019) on diabetes_ordinal: the SimLoss study baseline.

    python -m labelwise.train --config=configs/diabetes_sord.py --workdir=runs/diabetes_sord
    python -m labelwise.train --config=configs/diabetes_sord.py:runlocal --workdir=runs/smoke

Same arguments as configs/diabetes_simloss.py; ``--config.sord.scale`` sets the target sharpness.
"""

from labelwise.configs import diabetes_simloss


def get_config(arg=None):
  return diabetes_simloss.get_config(",".join(a for a in ((arg or ""), "method=sord") if a))
