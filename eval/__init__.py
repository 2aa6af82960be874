"""Metrics (plain array functions, ``labelwise.eval.metrics``) and evaluators looked up by name."""

from labelwise._extras import require_train

require_train("labelwise.eval")

from labelwise.eval import metrics
from labelwise.eval.evaluators import EVALUATORS, EvalContext, get_evaluator, register_evaluator
