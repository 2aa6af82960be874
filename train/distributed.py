"""Multi-process (multi-host) runs: start JAX's distributed runtime from flags or the environment.

A TPU pod slice or a group of GPU hosts runs one process per host; every process runs the same
command. The trainer then sees all devices of all processes (``jax.devices()``), each process reads
its own slice of every split, and only process 0 writes logs and results (see ``docs/multihost.md``).

Where the settings come from, first match wins:

1. flags ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (all three, or none),
   or ``--coordinator_address=auto`` alone: JAX detects the cluster (Cloud TPU VM metadata, Slurm,
   Open MPI, Kubernetes);
2. environment variables ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself), ``JAX_NUM_PROCESSES`` and
   ``JAX_PROCESS_ID`` (all three, or only the address on a cluster JAX detects);
3. a cluster JAX detects by itself: a multi-host Cloud TPU slice, Slurm with several tasks, Open MPI;
   ``jax.distributed.initialize()`` is then called without arguments.

Otherwise nothing is initialized and the run is single-process, unchanged. On CPU the cross-process
collectives go over gloo (``jax_cpu_collectives_implementation``), which is how a multi-process run
is exercised on one machine (``tests/test_multihost.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping, Optional

import jax

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
AUTO = "auto"  # --coordinator_address=auto: jax.distributed.initialize() detects everything


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
  """What ``jax.distributed.initialize`` gets; ``None`` fields are auto-detected by JAX."""
  coordinator_address: Optional[str]
  num_processes: Optional[int]
  process_id: Optional[int]
  source: str  # "flags", "environment" or "cluster"


def _check_address(address: str, name: str) -> str:
  if not isinstance(address, str) or not re.fullmatch(r"\[?[^\s\[\]]+\]?:\d{1,5}", address):
    raise ValueError(f"`{name}` must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}.")
  port = int(address.rsplit(":", 1)[1])
  if not 0 < port < 65536:
    raise ValueError(f"`{name}` has port {port}; expected 1..65535 (got {address!r}).")
  return address


def _to_int(value, name: str) -> int:
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"`{name}` must be an integer, got {value!r}.") from None


def _check_counts(num_processes: int, process_id: int, names) -> None:
  if num_processes < 1:
    raise ValueError(f"`{names[0]}` must be >= 1, got {num_processes}.")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"`{names[1]}` must be in [0, {num_processes - 1}] (`{names[0]}` is "
                     f"{num_processes}), got {process_id}.")


def _cluster_detected(environ: Mapping[str, str]) -> Optional[str]:
  """The name of a multi-process cluster JAX can configure by itself, if this process runs in one."""
  hosts = environ.get("TPU_WORKER_HOSTNAMES") or environ.get("TPU_PROCESS_ADDRESSES") or ""
  if len([h for h in hosts.split(",") if h.strip()]) > 1 or environ.get(
      "MEGASCALE_COORDINATOR_ADDRESS"):
    return "Cloud TPU (multi-host slice)"
  if int(environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in environ:
    return "Slurm"
  if int(environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return "Open MPI"
  return None


def resolve(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
            process_id: Optional[int] = None, *,
            environ: Optional[Mapping[str, str]] = None) -> Optional[DistributedSettings]:
  """The distributed settings of this process, or ``None`` for a single-process run.

  Raises ``ValueError`` naming the flag or variable when the settings are incomplete or invalid.
  """
  environ = os.environ if environ is None else environ
  flag_values = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                 "process_id": process_id}
  given = {k for k, v in flag_values.items() if v is not None and v != ""}
  if coordinator_address == AUTO:  # a cluster JAX configures by itself (e.g. a TPU pod slice)
    n = None if num_processes is None else _to_int(num_processes, "num_processes")
    i = None if process_id is None else _to_int(process_id, "process_id")
    if n is not None and i is not None:
      _check_counts(n, i, ("num_processes", "process_id"))
    return DistributedSettings(None, n, i, "cluster")
  if given:
    if len(given) != 3:
      missing = sorted(set(flag_values) - given)
      raise ValueError(
          f"multi-process flags must be given together: got {sorted(given)}, missing "
          f"{['--' + m for m in missing]} (expected --coordinator_address=HOST:PORT "
          f"--num_processes=N --process_id=I, the same address and N on every process).")
    n = _to_int(num_processes, "num_processes")
    i = _to_int(process_id, "process_id")
    _check_counts(n, i, ("num_processes", "process_id"))
    return DistributedSettings(_check_address(coordinator_address, "coordinator_address"), n, i,
                               "flags")
  env = {k: environ.get(k) or None for k in (ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID)}
  cluster = _cluster_detected(environ)
  if env[ENV_NUM_PROCESSES] or env[ENV_PROCESS_ID]:
    if not all(env.values()):
      missing = sorted(k for k, v in env.items() if not v)
      raise ValueError(f"multi-process environment variables must be set together: missing "
                       f"{missing} (have {sorted(k for k, v in env.items() if v)}).")
    n = _to_int(env[ENV_NUM_PROCESSES], ENV_NUM_PROCESSES)
    i = _to_int(env[ENV_PROCESS_ID], ENV_PROCESS_ID)
    _check_counts(n, i, (ENV_NUM_PROCESSES, ENV_PROCESS_ID))
    return DistributedSettings(_check_address(env[ENV_ADDRESS], ENV_ADDRESS), n, i, "environment")
  if env[ENV_ADDRESS] and cluster is None:
    raise ValueError(f"{ENV_ADDRESS}={env[ENV_ADDRESS]!r} is set but no cluster was detected to "
                     f"give the process count and id: also set {ENV_NUM_PROCESSES} and "
                     f"{ENV_PROCESS_ID}, or unset {ENV_ADDRESS} for a single-process run.")
  if cluster is not None:
    address = _check_address(env[ENV_ADDRESS], ENV_ADDRESS) if env[ENV_ADDRESS] else None
    return DistributedSettings(address, None, None, "cluster")
  return None


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, initialization_timeout: int = 300,
               environ: Optional[Mapping[str, str]] = None) -> bool:
  """Starts the distributed runtime if this is a multi-process run; returns whether it is one.

  Must run before anything touches a JAX device (``jax.devices()``, any computation). Calling it
  again once the runtime is up is a no-op. On CPU, cross-process collectives use gloo.
  """
  settings = resolve(coordinator_address, num_processes, process_id, environ=environ)
  if settings is None:
    return False
  if jax.distributed.is_initialized():
    return True
  # Only affects the CPU backend (GPU uses NCCL, TPU its interconnect); must precede backend start.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                             num_processes=settings.num_processes,
                             process_id=settings.process_id,
                             initialization_timeout=int(initialization_timeout))
  return True


def is_main_process() -> bool:
  """True on the process that writes logs, results and the progress bar (process 0)."""
  return jax.process_index() == 0
