r"""Host memory: peak resident memory of a digits run and of a CIFAR-sized mock run, and whether
resident memory grows over steps (a leak).

Each case runs in its own subprocess (so the peak is its own): the trainer's loop (prefetcher,
compiled step, metrics to host every step) for ``--steps`` steps, sampling the resident set size
after every step. "Growth" is the least-squares slope of RSS over the second half of the steps,
in MiB per 1000 steps; a leak of even a few KiB per step shows up there.

    python benchmarks/memory.py            # full
    python benchmarks/memory.py --quick    # tiny smoke run, not appended to results.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CASES = {
    "digits": ("digits / mlp, batch {b}", "digits_ce", dict(model="mlp"), 0),
    "cifar_mock": ("cifar10 mock (32x32x3, augment) / resnet18 w{w}, batch {b}", "cifar10_ce",
                   dict(data__cache_limit=0), 4096),
}


def one_case(case: str, steps: int, batch_size: int, width: int) -> dict:
  import numpy as np
  import tensorflow_datasets as tfds

  import pipeline
  from labelwise.data import feed
  title, module, overrides, mock = CASES[case]
  overrides = dict(overrides)
  if case == "cifar_mock":
    overrides["model_kwargs__width"] = width
  rss0 = _common.rss_mb()
  ctx = tfds.testing.mock_data(num_examples=mock) if mock else contextlib.nullcontext()
  with ctx, tempfile.TemporaryDirectory() as workdir:
    t = pipeline.build(module, overrides, batch_size, workdir)
    rss_data = _common.rss_mb()
    state = t.parallel.put_state(t.initial_state())
    prefetch = feed.Prefetcher(lambda s: t.parallel.put_batch(t.host_batch(s)), 0, steps)
    rss, guard = [], t.new_guard()
    try:
      for _ in range(steps):
        state, guard, dmetrics = t.train_step(state, guard, prefetch.next()[1])
        t.parallel.metrics_to_host(dmetrics)
        rss.append(_common.rss_mb())
    finally:
      prefetch.close()
  half = np.arange(steps // 2, steps)
  slope = float(np.polyfit(half, np.asarray(rss)[half], 1)[0]) if len(half) > 1 else float("nan")
  return dict(title=title.format(w=width, b=batch_size), steps=steps, rss_start=rss0,
              rss_data=rss_data,
              rss_first_step=rss[0], rss_end=rss[-1], peak=_common.peak_rss_mb(),
              growth_per_1k=1000 * slope, loadavg=_common.loadavg())


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--cifar_width", type=int, default=16)
  p.add_argument("--quick", action="store_true", help="tiny smoke run, not appended to results")
  p.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)  # subprocess mode
  p.add_argument("--out_dir", default=os.environ.get("OUT") or None)
  a = p.parse_args(argv)
  if a.steps < 4:
    p.error(f"--steps must be >= 4 (a slope over the second half), got {a.steps}")
  steps, bs, width = a.steps, a.batch_size, a.cifar_width
  if a.quick:
    steps, bs, width = 6, 32, 4
  if a.case:
    print("RESULT " + json.dumps(one_case(a.case, steps, bs, width)), flush=True)
    return
  rows = []
  for case in CASES:
    cmd = [sys.executable, os.path.abspath(__file__), f"--case={case}", f"--steps={a.steps}",
           f"--batch_size={a.batch_size}", f"--cifar_width={a.cifar_width}"]
    if a.quick:
      cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
      raise RuntimeError(f"memory case {case!r} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    r = json.loads(lines[-1][len("RESULT "):])
    print(r, flush=True)
    rows.append([r["title"], r["steps"], f"{r['rss_start']:.0f}", f"{r['rss_data']:.0f}",
                 f"{r['rss_first_step']:.0f}", f"{r['rss_end']:.0f}", f"{r['peak']:.0f}",
                 f"{r['growth_per_1k']:+.2f}", r["loadavg"]])
  headers = ["run", "steps", "RSS after imports MiB", "RSS data + model built MiB",
             "RSS after step 1 MiB", "RSS at end MiB", "peak RSS MiB",
             "growth MiB / 1k steps (2nd half)", "loadavg"]
  note = ("One process per run; the CIFAR mock reads every batch from the mocked TFDS source "
          "(`cache_limit=0`), so its memory does not include a cached split.")
  _common.report("Host memory (benchmarks/memory.py)", _common.table(headers, rows) + "\n\n" + note,
                 append=not a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
  main()
