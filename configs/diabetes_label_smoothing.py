r"""Label smoothing on diabetes_ordinal: the SimLoss study baseline.

    python -m labelwise.train --config=configs/diabetes_label_smoothing.py --workdir=runs/diab_ls
    python -m labelwise.train --config=configs/diabetes_label_smoothing.py:runlocal --workdir=runs/s

Same arguments as configs/diabetes_simloss.py; ``--config.label_smoothing.alpha`` sets the smoothing.
"""

from labelwise.configs import diabetes_simloss


def get_config(arg=None):
  return diabetes_simloss.get_config(
      ",".join(a for a in ((arg or ""), "method=label_smoothing") if a))
