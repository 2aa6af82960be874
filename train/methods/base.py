"""The method interface: what a training method computes from a batch.

A method maps ``(params, batch, key, model)`` to ``(loss, metrics)``; the trainer does not know which
method it runs. Methods are classes registered by name (``config.method``); their options come from
the config dict named like the method (``config.<method name>``), merged onto ``defaults``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import numpy as np


class LossOutput(NamedTuple):
  """What ``Method.loss`` returns.

  Attributes:
    loss: scalar, the mean over this device's batch (the trainer averages over devices).
    metrics: ``{name: scalar}`` logged as ``train/<name>`` (averaged over devices).
    model_state: the model state after the forward pass(es) (e.g. BatchNorm statistics).
  """
  loss: jax.Array
  metrics: Dict[str, jax.Array]
  model_state: Any


@dataclasses.dataclass(frozen=True)
class StepContext:
  """Everything a method sees in one step on one device.

  Attributes:
    params: the trainable parameters (differentiate w.r.t. these).
    model_state: non-trainable model collections (``batch_stats``), possibly empty.
    buffers: the method's own non-trainable pytree (``Method.init_buffers``), saved in checkpoints.
    batch: the device-local batch (``input``, ``label``, ``index``, optional fields).
    key: a PRNG key, different per step and per device.
    train: True in the training step.
    axis_name: the device axis (``"data"``) under pmap/shard_map, None under jit (global batch).
      Pass it to any loss whose statistic spans the batch.
    apply_fn: the model's ``apply``.
    step: the global step being computed (0-based, traced int32), e.g. for warm-up of a weight.
    hparams: the method's numeric hyperparameters as (possibly traced) arrays,
      ``{option name: array}`` (:meth:`Method.hparams`); in a sweep each replica has its own values.
      Losses read them through ``Method.hp(ctx)``, never from ``Method.options``; None (a context
      built by hand) means the method's own options.
  """
  params: Any
  model_state: Any
  buffers: Any
  batch: Mapping[str, jax.Array]
  key: jax.Array
  train: bool
  axis_name: Optional[str]
  apply_fn: Callable
  step: Any = 0
  hparams: Optional[Mapping[str, Any]] = None

  def apply(self, params, inputs, train: Optional[bool] = None, model_state=None):
    """Runs the model: returns ``(outputs, new_model_state)``; outputs has logits, features, heads."""
    train = self.train if train is None else train
    model_state = self.model_state if model_state is None else model_state
    variables = {"params": params, **model_state}
    if train and model_state:
      outputs, new_state = self.apply_fn(variables, inputs, train=True,
                                         mutable=list(model_state.keys()))
      return outputs, dict(new_state)
    return self.apply_fn(variables, inputs, train=train), model_state


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """Static facts about a run that methods may need to build heads and buffers."""
  num_classes: int                      # classes of the training label
  num_fine_classes: int                 # classes of the dataset's fine label
  num_coarse_classes: Optional[int]
  num_train_examples: int
  input_shape: Tuple[int, ...]
  fine_to_coarse: Optional[Any] = None  # np.ndarray [num_fine_classes]


def is_numeric(value) -> bool:
  """True for int and float option values (not bool)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


class HostContext:
  """What :meth:`Method.host_update` may use: the run's state at one step, on the host.

  The trainer builds one at each step where ``Method.needs_host_update(step)`` is True. Everything
  is fetched on first use only (``state()`` syncs the host with the devices once).

  Attributes:
    step: the step about to run (0-based: ``state().step``).
    num_train_examples: size of the training split.
    apply: the model's ``apply(variables, inputs, train=False)`` (un-jitted, host batch sizes).
  """

  def __init__(self, step: int, *, num_train_examples: int, apply: Callable,
               get_state: Callable[[], Any], predictions: Callable[[Any], Dict[str, Any]],
               first_batch: Callable[[], Dict[str, Any]],
               stop_requested: Callable[[], bool] = lambda: False):
    self.step = int(step)
    self.num_train_examples = int(num_train_examples)
    self.apply = apply
    self._get_state, self._predictions = get_state, predictions
    self._first_batch, self._stop_requested = first_batch, stop_requested
    self._state = None

  def state(self):
    """The train state before step ``step`` (a host copy: numpy leaves)."""
    if self._state is None:
      self._state = self._get_state()
    return self._state

  def train_predictions(self) -> Dict[str, Any]:
    """Eval-mode outputs and batch fields (``index``, ``label``, ...) of every training example
    exactly once, for :meth:`state`."""
    return self._predictions(self.state())

  def first_batch(self) -> Dict[str, Any]:
    """The host training batch of step 0 (numpy, relabelled like every training batch)."""
    return self._first_batch()

  def stop_requested(self) -> bool:
    """True once the run was asked to stop (SIGTERM): long host work may end early."""
    return bool(self._stop_requested())


class Method:
  """Base class. Subclasses set ``defaults`` and implement ``loss``.

  The objective contract: every numeric option (an int or float in ``defaults``) is a
  hyperparameter that ``loss`` reads from ``ctx.hparams`` as a (possibly traced) array, so one
  compiled step serves any value (a sweep varies them per replica). ``static_options`` names the
  numeric options that fix the program instead (shapes, loop counts, host-side schedules), each with
  the reason; they cannot vary within one compiled program.
  """
  name: ClassVar[str] = ""
  defaults: ClassVar[Mapping[str, Any]] = {}
  #: numeric options that stay static (Python values): ``{option: why}``.
  static_options: ClassVar[Mapping[str, str]] = {}
  #: evaluators run by default for this method (``config.evaluators`` overrides).
  evaluators: ClassVar[Tuple[str, ...]] = ("classification",)

  def __init__(self, config):
    self.config = config
    given = config.get(self.name, None) if self.name else None
    given = dict(given) if given is not None else {}
    unknown = sorted(set(given) - set(self.defaults))
    if unknown:
      raise ValueError(f"unknown option(s) {unknown} for method {self.name!r}; known options: "
                       f"{sorted(self.defaults)}.")
    self.options = {**dict(self.defaults), **given}
    self.validate()

  def validate(self) -> None:
    """Raises ValueError for option values out of range (called by __init__)."""

  @classmethod
  def hparam_names(cls) -> Tuple[str, ...]:
    """The numeric options that are traced hyperparameters (sorted)."""
    return tuple(sorted(k for k, v in cls.defaults.items()
                        if is_numeric(v) and k not in cls.static_options))

  def hp(self, ctx: StepContext) -> Mapping[str, Any]:
    """The hyperparameters a loss uses: ``ctx.hparams``, or this method's options when None."""
    return self.hparams() if ctx.hparams is None else ctx.hparams

  def hparams(self) -> Dict[str, np.ndarray]:
    """This method's hyperparameters as arrays: int32 for int options, float32 for float ones."""
    out = {}
    for k in self.hparam_names():
      dtype = np.int32 if isinstance(self.defaults[k], int) else np.float32
      out[k] = np.asarray(self.options[k], dtype)
    return out

  def extra_heads(self, info: RunInfo) -> Dict[str, int]:
    """Extra model heads this method needs: ``{name: output_dim}``."""
    return {}

  def init_buffers(self, key, *, info: RunInfo) -> Any:
    """The method's non-trainable state (saved in checkpoints)."""
    return {}

  def needs_host_update(self, step: int) -> bool:
    """Whether :meth:`host_update` runs before step ``step`` (0-based). Default: never.

    Each such step syncs the host with the devices, so return True only where host work is due
    (e.g. ``step % update_every == 0``).
    """
    return False

  def host_update(self, host: HostContext) -> Any:
    """Host work before a step where :meth:`needs_host_update` is True.

    Returns new method buffers (a host pytree with the structure of ``init_buffers``) to replace
    ``state.buffers`` from that step on, or None to leave the state unchanged.
    """
    return None

  def loss(self, ctx: StepContext) -> LossOutput:
    raise NotImplementedError
