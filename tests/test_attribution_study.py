"""The attribution study (experiments/attribution/run.py) through the trainer, and the attribution
evaluator's once-per-model saliency.

The smoke version trains CE and ActDiff (2 grid points x 2 seeds each, 4 steps) and the ActDiff
masked-fraction arm through ``tuning.run_arm``; the test reads back what it wrote and recomputes
the choice from the replicas' validation losses.
"""

import json
import math

import numpy as np
import pytest


def _mean_by_point(replicas, key):
  """{grid point (sorted tuple, seed dropped): mean of ``key`` over its seeds}, in first-seen order."""
  groups = {}
  for q in replicas:
    point = tuple(sorted((k, v) for k, v in q["overrides"].items() if k != "seed"))
    groups.setdefault(point, []).append(q[key])
  return {p: float(np.mean(v)) for p, v in groups.items()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  from labelwise.experiments.attribution import run
  tmp = tmp_path_factory.mktemp("attr")
  out, runs = tmp / "out", tmp / "runs"
  res = run.main(["--smoke", "--out", str(out), "--workdir", str(runs)])
  return run, res, out, runs


def test_smoke_outputs_parse_and_the_choice_is_the_best_validation_mean(smoke):
  run, res, out, runs = smoke
  text = (out / "results.json").read_text()
  raw = json.loads(text)
  assert set(raw["arms"]) == {"ce", "actdiff"} and raw["select"] == "val/loss:min"
  assert str(runs) not in text and "<tmp>/" in raw["arms"]["ce"]["workdir"]   # portable paths
  for arm, grid in (("ce", {"optimizer.learning_rate": [1e-3, 3e-3]}),
                    ("actdiff", {"actdiff.lam": [0.1, 1.0]})):
    r = raw["arms"][arm]
    assert r["grid"] == grid
    # 2 points x 2 seeds, in grid order, each with validation and test metrics.
    assert [q["overrides"]["seed"] for q in r["replicas"]] == [0, 1, 0, 1]
    for q in r["replicas"]:
      assert np.isfinite(q["val/loss"]) and 0.0 <= q["eval/test_shift/auc"] <= 1.0
      assert 0.0 <= q["eval/saliency/grad_iou"] <= 1.0
      # saliency once per model: in the final evaluation, not in the validation pass
      assert not any(k.startswith("val/saliency/") for k in q)
    means = _mean_by_point(r["replicas"], "val/loss")
    best = min(means, key=means.get)
    assert dict(best) == r["selected"]["point"], (arm, means)
    assert r["selected"]["val"]["val/loss"]["mean"] == pytest.approx(means[best])
  # The masked-fraction arm trains at ActDiff's chosen lambda.
  fr = raw["fractions"]
  assert fr["base_point"] == raw["arms"]["actdiff"]["selected"]["point"]
  prov = json.loads((out / "results.provenance.json").read_text())
  cfg = prov["configs"]["arms"]["actdiff fractions"]["config"]
  assert cfg["actdiff"]["lam"] == fr["base_point"]["actdiff.lam"]
  assert prov["configs"]["arms"]["actdiff fractions"]["grid"] == {"actdiff.mask_fraction": [0.5]}
  assert prov["seeds"] == [0, 1] and prov["configs"]["arms"]["ce"]["config"]["total_steps"] == 4
  # runs.json: one flat row per trained model.
  flat = json.loads((out / "runs.json").read_text())
  assert len(flat) == 4 + 4 + 2
  assert {r["arm"] for r in flat} == {"ce", "actdiff", "actdiff fractions"}
  # The report names the chosen points and the paper's numbers, and plots were drawn.
  md = (out / "results.md").read_text()
  for arm in ("ce", "actdiff"):
    label = run.tuning.point_label(raw["arms"][arm]["selected"]["point"])
    assert f"| {arm} | {label} |" in md
  assert "chosen on valid_shift" in md and "Spearman" in md
  assert md.rstrip().splitlines()[-1].startswith("_Provenance: commit")
  assert (out / "scatter.png").stat().st_size > 5_000
  assert (out / "saliency_grid.png").stat().st_size > 5_000
  # Re-rendering from results.json gives the same table, and keeps the Fashion-MNIST part's section.
  run.main(["--render", "--out", str(out)])
  assert (out / "results.md").read_text() == md
  from labelwise.experiments import fashion_mnist_runs
  from labelwise.experiments.attribution import fashion_mnist
  fashion_mnist_runs.attach_section(str(out / "results.md"), fashion_mnist.MARKER, "FM part.\n")
  run.main(["--render", "--out", str(out)])
  again = (out / "results.md").read_text()
  assert again.startswith(md) and again.rstrip().endswith(fashion_mnist.MARKER + "\n\nFM part.")


def test_grid_maps_are_the_evaluators_maps_of_the_chosen_point(smoke):
  _, res, _, runs = smoke
  for arm, path in res["grid_maps"].items():
    r = res["arms"][arm]
    first = r["selected"]["replicas"][0]
    assert r["replicas"][first]["overrides"] == {**r["selected"]["point"], "seed": 0}
    assert path.startswith(str(runs / arm / "replicas" / str(first)))
    with np.load(path) as z:
      assert z["grad"].shape == z["mask"].shape == (6, 28, 28)
      assert (z["grad"] >= 0).all() and z["grad"].sum() > 0


def test_a_second_run_reads_the_finished_arms_back(smoke, tmp_path):
  run, res, _, runs = smoke
  again = run.main(["--smoke", "--out", str(tmp_path), "--workdir", str(runs)])
  assert all(r["reused"] for r in again["arms"].values()) and again["fractions"]["reused"]
  assert again["arms"]["ce"]["replicas"] == json.loads(json.dumps(res["arms"]["ce"]["replicas"]))
  prov = json.loads((tmp_path / "results.provenance.json").read_text())
  assert "not retrained" in prov["extra"]["note"]


def test_finished_only_reports_what_finished_and_trains_nothing(smoke, tmp_path):
  run, res, _, runs = smoke
  again = run.main(["--smoke", "--finished_only", "--out", str(tmp_path / "a"),
                    "--workdir", str(runs)])
  assert again["not_run"] == [] and again["fractions"]["reused"]
  assert again["arms"]["actdiff"]["replicas"] == json.loads(
      json.dumps(res["arms"]["actdiff"]["replicas"]))
  none = run.main(["--smoke", "--finished_only", "--out", str(tmp_path / "b"),
                   "--workdir", str(tmp_path / "empty")])
  assert none["not_run"] == ["ce", "actdiff", "actdiff fractions"] and not none["arms"]
  assert not (tmp_path / "empty" / "ce").exists()
  assert "**Not run yet**" in (tmp_path / "b" / "results.md").read_text()


def test_only_refuses_unknown_arms(tmp_path):
  from labelwise.experiments.attribution import run
  with pytest.raises(ValueError, match="--only: unknown arms \\['nope'\\]"):
    run.main(["--smoke", "--only", "nope", "--out", str(tmp_path)])


def test_only_updates_the_stored_results_in_place(smoke, tmp_path):
  """``--only ce`` with an existing results.json: CE retrained (a fresh workdir), ActDiff and its
  masked-fraction arm kept byte for byte with the provenance of the run that produced them."""
  import shutil
  run, _, out, _ = smoke
  dst = tmp_path / "out"
  shutil.copytree(out, dst)
  before = json.loads((dst / "results.json").read_text())
  runs_before = json.loads((dst / "runs.json").read_text())
  prov_before = json.loads((dst / "results.provenance.json").read_text())
  run.main(["--smoke", "--only", "ce", "--out", str(dst), "--workdir", str(tmp_path / "runs")])
  after = json.loads((dst / "results.json").read_text())
  assert list(after["arms"]) == ["ce", "actdiff"]   # the study's arm order, not the run order
  for a, b in ((after["arms"]["actdiff"], before["arms"]["actdiff"]),
               (after["fractions"], before["fractions"])):
    assert json.dumps(a) == json.dumps(b)           # the same bytes when serialized
  assert set(after["kept"]) == {"actdiff", "actdiff fractions"}
  for k in after["kept"].values():
    assert k["commit"] == prov_before["git"]["commit"]
    assert k["created_utc"] == prov_before["created_utc"]
  # The named arm is this run's: trained in the new workdir (same config and seeds: same numbers).
  ce, ce_before = after["arms"]["ce"], before["arms"]["ce"]
  assert ce["workdir"] != ce_before["workdir"] and "runs/ce" in ce["workdir"]
  assert not ce["reused"] and after["reused"] == []
  assert [q["val/loss"] for q in ce["replicas"]] == pytest.approx(
      [q["val/loss"] for q in ce_before["replicas"]], rel=1e-5)
  # runs.json: the kept arms' rows unchanged, the named arm's rows rewritten from this run.
  runs_after = json.loads((dst / "runs.json").read_text())
  rows = lambda flat, arms: [r for r in flat if r["arm"] in arms]  # noqa: E731
  assert rows(runs_after, {"actdiff", "actdiff fractions"}) == rows(
      runs_before, {"actdiff", "actdiff fractions"})
  assert len(rows(runs_after, {"ce"})) == 4
  # The provenance JSON is this run's, carrying the kept arms' configs and origin.
  prov = json.loads((dst / "results.provenance.json").read_text())
  assert prov["extra"]["kept_arms"] == after["kept"]
  assert prov["configs"]["arms"]["actdiff"] == prov_before["configs"]["arms"]["actdiff"]
  assert prov["configs"]["args"]["only"] == ["ce"]
  md = (dst / "results.md").read_text()
  assert "run.py --smoke --only ce`" in md and "**Kept from an earlier run**" in md
  assert f"| actdiff | {run.tuning.point_label(before['arms']['actdiff']['selected']['point'])} |" \
      in md
  # A second --only run keeps the original provenance of the kept arms, not the previous run's.
  run.main(["--smoke", "--only", "ce", "--out", str(dst), "--workdir", str(tmp_path / "runs")])
  again = json.loads((dst / "results.json").read_text())
  assert again["kept"] == after["kept"] and again["arms"]["ce"]["reused"]
  assert json.dumps(again["arms"]["actdiff"]) == json.dumps(before["arms"]["actdiff"])
  # A different budget than the stored one is refused before anything trains.
  with pytest.raises(ValueError, match="different budget.*--seeds 2 \\(this run: 5\\)"):
    run.main(["--only", "ce", "--out", str(dst), "--workdir", str(tmp_path / "other")])
  assert not (tmp_path / "other" / "ce").exists()


def _fake_result(grid, chosen):
  """A result with one replica per point of ``grid`` (2 seeds) and ``chosen`` selected."""
  import itertools
  keys = list(grid)
  reps = [{"overrides": {**dict(zip(keys, vals)), "seed": s}}
          for vals in itertools.product(*grid.values()) for s in (0, 1)]
  return {"replicas": reps, "selected": {"point": chosen, "by": "val/loss:min",
                                         "val": {"val/loss": {"mean": 0.5}}}}


def test_the_edge_rule_picks_one_spacing_ratio_beyond_the_chosen_ends():
  from labelwise.experiments.attribution import run
  lam, lr = "actdiff.lam", "optimizer.learning_rate"
  # lambda at its low end (grid ratio 3 -> 0.0333 -> 0.03) and lr at its high end (ratio 3 ->
  # 9e-3 -> 1e-2): each moved alone, then both together.
  r = _fake_result({lam: (0.1, 0.3, 1.0), lr: (1e-3, 3e-3)}, {lam: 0.1, lr: 3e-3})
  assert run.edge_points(r) == [((lam,), {lam: 0.03, lr: 3e-3}), ((lr,), {lam: 0.1, lr: 1e-2}),
                                ((lam, lr), {lam: 0.03, lr: 1e-2})]
  # lambda inside its grid: only lr moves (its low end: 1e-3 / 3 -> 3e-4).
  r = _fake_result({lam: (0.1, 0.3, 1.0), lr: (1e-3, 3e-3)}, {lam: 0.3, lr: 1e-3})
  assert run.edge_points(r) == [((lr,), {lam: 0.3, lr: 3e-4})]
  # A ratio-10 grid steps by 10; the learning-rate grid's high end 5e-3 (ratio 5/3) -> 1e-2,
  # its low end 3e-4 (ratio 3/5) -> 1.8e-4 -> 2e-4; an interior choice has no beyond point.
  assert run.beyond((10.0, 100.0, 1000.0), 10.0) == 1.0
  assert run.beyond((0.1, 1.0, 10.0), 10.0) == 100.0
  assert run.beyond(run.LR_ONLY, 5e-3) == 1e-2 and run.beyond(run.LR_ONLY, 3e-4) == 2e-4
  assert run.edge_points(_fake_result({lr: run.LR_ONLY}, {lr: 3e-3})) == []
  with pytest.raises(ValueError, match="`value` 0.3 is not an end"):
    run.beyond((0.1, 0.3, 1.0), 0.3)
  with pytest.raises(ValueError, match="fewer than two distinct values"):
    run.beyond((0.1, 0.1), 0.1)


def test_edge_check_trains_the_beyond_points_and_keeps_the_arms(smoke, tmp_path):
  """``--edge_check`` on the smoke results: every arm chose an end of its 2-point grid, so each
  gets its beyond point (2 seeds) in ``edge_check``; the arms stay byte for byte; the section is
  written, and a second call reads the finished sweeps back."""
  import shutil
  run, _, out, runs = smoke
  dst = tmp_path / "out"
  shutil.copytree(out, dst)
  before = json.loads((dst / "results.json").read_text())
  run.main(["--edge_check", "--out", str(dst), "--workdir", str(tmp_path / "runs")])
  after = json.loads((dst / "results.json").read_text())
  for k in ("arms", "fractions", "config"):
    assert json.dumps(after[k]) == json.dumps(before[k])
  assert set(after["edge_check"]) == {"ce", "actdiff"}
  lr, lam = "optimizer.learning_rate", "actdiff.lam"
  for arm, key, grid in (("ce", lr, (1e-3, 3e-3)), ("actdiff", lam, (0.1, 1.0))):
    chk, r = after["edge_check"][arm], after["arms"][arm]
    end = r["selected"]["point"][key]
    want = {1e-3: 3e-4, 3e-3: 1e-2, 0.1: 0.01, 1.0: 10.0}[end]   # ratio 3 / 10 past that end
    assert chk["chosen"] == r["selected"]["point"] and chk["conv_impl"] == "auto"
    (b,) = chk["beyond"]
    assert b["point"] == {**r["selected"]["point"], key: want} and b["moved"] == [key]
    assert [q["overrides"] for q in b["replicas"]] == [{**b["point"], "seed": s} for s in (0, 1)]
    assert b["val"] == pytest.approx(np.mean([q["val/loss"] for q in b["replicas"]]))
    chosen_val = np.mean([q["val/loss"] for q in run.tuning.selected(r)])
    assert b["better_on_val"] == bool(b["val"] < chosen_val)
    assert all(0.0 <= q["eval/test_shift/auc"] <= 1.0 for q in b["replicas"])
  md = (dst / "results.md").read_text()
  assert "## Beyond the grid ends (outside the budget)" in md
  moved = 0
  for arm in ("ce", "actdiff"):
    b = after["edge_check"][arm]["beyond"][0]
    label = f"beyond ({b['moved'][0].split('.')[-1]}): {run.tuning.point_label(b['point'])}"
    label = f"**{label}**" if b["better_on_val"] else label   # bold: the extended choice
    assert f"| {arm} | {label} | {b['val']:.3g} | {'yes' if b['better_on_val'] else 'no'} |" in md
    moved += b["better_on_val"]
  assert (f"would move for {moved} of 2 arms" if moved else "would move for none of the 2 arms") \
      in md
  prov = json.loads((dst / "results.provenance.json").read_text())
  assert "edge_check_seconds" in prov["extra"] and "edge_check_commit" in prov["extra"]
  # Re-rendering gives the same report; a second edge check trains nothing new.
  run.main(["--render", "--out", str(dst)])
  assert (dst / "results.md").read_text() == md
  again = run.main(["--edge_check", "--out", str(dst), "--workdir", str(tmp_path / "runs")])
  assert json.dumps(again["edge_check"]) == json.dumps(after["edge_check"])
  with pytest.raises(ValueError, match="--only: arms \\['rrr'\\] are not in"):
    run.main(["--edge_check", "--only", "rrr", "--out", str(dst)])
  # A walk of 2 steps through the trainer: step 1 is read from the stored points; an arm whose
  # step-1 point was better on validation starts step 2 there (one spacing ratio further, e.g. lr
  # 1e-2 -> 3e-2, lam 0.01 -> 0.001) unless that choice is interior; the others stop after step 1.
  walked = run.main(["--edge_check", "--edge_steps", "2", "--out", str(dst),
                     "--workdir", str(tmp_path / "runs")])
  md = (dst / "results.md").read_text()
  for arm in ("ce", "actdiff"):
    chk, r = walked["edge_check"][arm], walked["arms"][arm]
    b1 = chk["beyond"][0]
    assert json.dumps(b1) == json.dumps(after["edge_check"][arm]["beyond"][0])
    key = b1["moved"][0]
    if b1["better_on_val"]:   # the choice moved to the beyond point: again at the (new) end
      want = {(lr, 3e-4): 1e-4, (lr, 1e-2): 3e-2, (lam, 0.01): 0.001,
              (lam, 10.0): 100.0}[key, b1["point"][key]]
      (b2,) = chk["beyond"][1:]
      assert (b2["step"], b2["from"], b2["point"]) == (2, b1["point"], {key: want})
      assert [q["overrides"] for q in b2["replicas"]] == [{key: want, "seed": s} for s in (0, 1)]
      assert [w["from"] for w in chk["walk"]["steps"]] == [r["selected"]["point"], b1["point"]]
      assert f"| {arm} | " + ("**" if b2["val"] < b1["val"] else "") + \
          f"step 2 beyond ({key.split('.')[-1]}): {run.tuning.point_label(b2['point'])}" in md
      final = b2["point"] if b2["val"] < b1["val"] else b1["point"]
    else:   # the grid's choice stays, inside the extended grid: the walk stops after step 1
      assert len(chk["beyond"]) == 1 and len(chk["walk"]["steps"]) == 1
      final = r["selected"]["point"]
    assert chk["walk"]["final"] == final
    # at the step-2 point the choice is again at an end; at the step-1 point or the grid's inside
    assert chk["walk"]["stopped"] == ("edge_steps reached" if len(chk["beyond"]) == 2
                                      and final == chk["beyond"][1]["point"] else "interior")
  assert "Walk (`--edge_steps N`)" in md


def test_saliency_grid_file_is_partial_when_kept_arms_lost_their_maps(tmp_path):
  from labelwise.experiments.attribution import run
  have = tmp_path / "rrr.npz"
  have.write_bytes(b"x")
  res = {"arms": {"ce": {}, "rrr": {}},
         "grid_maps": {"ce": str(tmp_path / "gone.npz"), "rrr": str(have)}}
  assert run.available_maps(res) == ["rrr"] and run.grid_file(res) == "saliency_grid_rrr.png"
  res["grid_maps"]["ce"] = str(have)
  assert run.grid_file(res) == "saliency_grid.png"


def test_old_arm_names_map_to_grid_points():
  from labelwise.experiments.attribution import run
  assert run._old_point("ce") == ("ce", {})
  assert run._old_point("actdiff lam=0.1 frac=0.5") == (
      "actdiff", {"actdiff.lam": 0.1, "actdiff.mask_fraction": 0.5})
  assert run._old_point("rrr lam=100") == ("rrr", {"rrr.lam": 100.0})


def test_every_arm_has_the_same_budget():
  from labelwise.experiments.attribution import run
  from labelwise.experiments import tuning
  sizes = {a: len(tuning.Arm(a, None, grid).points()) for a, (_, grid) in run.ARMS.items()}
  assert set(sizes.values()) == {6}, sizes


# --------------------------------------------------------------------- the evaluator, directly


class _Tiny:
  """A linear two-class model on flattened 6x6 images (hashable by identity, like a module)."""

  def apply(self, variables, x, train=False):
    import jax.numpy as jnp
    s = jnp.sum(x[..., 0] * variables["params"]["w"], axis=(1, 2))
    return {"logits": jnp.stack([s, -s], axis=-1)}


def _ctx(tmp_path, model, w, eval_split):
  import ml_collections
  from labelwise.eval.evaluators import EvalContext
  rng = np.random.RandomState(0)
  mask = np.zeros((8, 6, 6), np.uint8)
  mask[:, 1:4, 1:4] = 1
  splits = {s: {"input": rng.rand(8, 6, 6, 1).astype(np.float32),
                "label": rng.randint(0, 2, 8).astype(np.int32), "mask": mask}
            for s in ("train", "valid_id", "test_shift")}

  class _Split:
    def __init__(self, name):
      self.name = name

    def all(self):
      return splits[self.name]

  class _Spec:
    pass

  spec = _Spec()
  spec.splits = tuple(splits)
  dataset = type("D", (), {"spec": spec, "split": staticmethod(_Split)})()
  params = {"w": w}

  def predict(split):
    z = np.asarray(model.apply({"params": params}, splits[split]["input"])["logits"])
    return {"logits": z, "label": splits[split]["label"]}
  config = ml_collections.ConfigDict({"data": {"eval_split": "test_shift"},
                                      "attribution_eval": {"ig_steps": 3, "picture_examples": 2,
                                                           "save_png": False}})
  return EvalContext(config=config, params=params, model_state={}, buffers={}, model=model,
                     method=None, dataset=dataset, eval_split=eval_split, workdir=str(tmp_path),
                     predict_fn=predict), splits


def test_saliency_is_compiled_once_for_models_of_one_definition(tmp_path):
  from labelwise.eval import saliency
  model = _Tiny()
  before = saliency._saliency_fns.cache_info()
  outs = []
  for seed in range(3):   # three "replicas": other weights, same model and options
    w = np.random.RandomState(seed).randn(6, 6).astype(np.float32)
    ctx, splits = _ctx(tmp_path / str(seed), model, w, "test_shift")
    (tmp_path / str(seed)).mkdir()
    outs.append(saliency.attribution_evaluator(ctx))
    # the maps are those of this model's weights: |d z_y / dx| = |w| for either class
    with np.load(tmp_path / str(seed) / "saliency_test_shift.npz") as z:
      np.testing.assert_allclose(z["grad"], np.broadcast_to(np.abs(w), (2, 6, 6)), rtol=1e-6)
      np.testing.assert_array_equal(z["input"], splits["test_shift"]["input"][:2])
    assert not (tmp_path / str(seed) / "saliency_test_shift.png").exists()   # save_png=False
  after = saliency._saliency_fns.cache_info()
  assert after.misses - before.misses == 1 and after.hits - before.hits == 2
  assert len({o["saliency/grad_mass"] for o in outs}) == 3


def test_a_validation_pass_skips_the_saliency(tmp_path):
  from labelwise.eval import saliency
  w = np.ones((6, 6), np.float32)
  ctx, _ = _ctx(tmp_path, _Tiny(), w, "valid_id")
  out = saliency.attribution_evaluator(ctx)
  assert sorted(out) == sorted(f"{s}/{m}" for s in ("valid_id", "test_shift")
                               for m in ("accuracy", "auc"))
  assert not list(tmp_path.iterdir())
  ctx.eval_split = "test_shift"
  assert "saliency/grad_iou" in saliency.attribution_evaluator(ctx)


def _hand_results(tmp_path, val):
  """A stored results.json of the smoke arms (CE: lr {1e-3, 3e-3}; ActDiff: lam {0.1, 1}, 2 seeds)
  whose validation losses are ``val[arm](point)``, chosen by the lowest one (no training)."""
  lr, lam = "optimizer.learning_rate", "actdiff.lam"
  arms = {}
  for arm, key, grid in (("ce", lr, (1e-3, 3e-3)), ("actdiff", lam, (0.1, 1.0))):
    reps = [{"overrides": {key: v, "seed": s}, "val/loss": val[arm]({key: v})}
            for v in grid for s in (0, 1)]
    best = min(grid, key=lambda v: val[arm]({key: v}))
    arms[arm] = {"replicas": reps, "selected": {"point": {key: best}, "by": "val/loss:min",
                                                "val": {"val/loss": {"mean": val[arm]({key: best})}}}}
  res = {"config": {"seeds": 2, "steps": 4, "smoke": True}, "arms": arms}
  (tmp_path / "results.json").write_text(json.dumps(res))
  return res


def _hand_trainer(run, monkeypatch, val, diverge=()):
  """``run_one_arm`` replaced by the hand losses ``val`` (``diverge``: points that raise the
  trainer's non-finite error); results.json written, the report skipped. Returns the list of
  trained points."""
  trained = []

  def fake(arm, workdir, seeds):
    point = {k: v[0] for k, v in arm.grid.items()}
    name = arm.name.split("|")[0]
    trained.append((name, point))
    if point in diverge:
      raise FloatingPointError("non-finite loss or gradient at step 3 (hand)")
    v = val[name](point)
    return {"replicas": [{"overrides": {**point, "seed": s}, "val/loss": v} for s in seeds],
            "selected": {"point": point, "by": "val/loss:min", "val": {"val/loss": {"mean": v}}},
            "summary": None, "sweeps": 1, "wall_s": 0.0, "train_wall_s": 0.0,
            "examples_per_sec": 1.0, "workdir": workdir, "reused": False}

  monkeypatch.setattr(run, "run_one_arm", fake)
  monkeypatch.setattr(run, "_save_edge",
                      lambda res, path, md_path, seconds: open(path, "w").write(json.dumps(res)))
  return trained


def test_the_edge_walk_stops_when_the_choice_is_interior(tmp_path, monkeypatch):
  """Hand losses: CE's val loss |log10(lr / 1e-2)| has its minimum at 1e-2, one step beyond the
  grid's end 3e-3: step 1 moves the choice there (again at an end), step 2 trains 3e-2 (worse),
  and the walk stops with 1e-2 inside the extended grid. ActDiff's 0.1 + |log10(lam / 0.1)| is
  lowest at the grid's end 0.1: step 1 trains 0.01 (worse) and the walk stops after one step."""
  from labelwise.experiments.attribution import run
  lr, lam = "optimizer.learning_rate", "actdiff.lam"
  val = {"ce": lambda p: abs(math.log10(p[lr] / 1e-2)),
         "actdiff": lambda p: 0.1 + abs(math.log10(p[lam] / 0.1))}
  _hand_results(tmp_path, val)
  trained = _hand_trainer(run, monkeypatch, val)
  res = run.main(["--edge_check", "--edge_steps", "5", "--out", str(tmp_path),
                  "--workdir", str(tmp_path / "runs")])
  assert trained == [("ce", {lr: 1e-2}), ("ce", {lr: 3e-2}), ("actdiff", {lam: 0.01})]
  ce, ad = res["edge_check"]["ce"], res["edge_check"]["actdiff"]
  assert [(b["step"], b["from"], b["point"]) for b in ce["beyond"]] == [
      (1, {lr: 3e-3}, {lr: 1e-2}), (2, {lr: 1e-2}, {lr: 3e-2})]
  assert [w["from"] for w in ce["walk"]["steps"]] == [{lr: 3e-3}, {lr: 1e-2}]
  assert ce["walk"]["final"] == {lr: 1e-2} and ce["walk"]["stopped"] == "interior"
  assert ce["beyond"][1]["val"] == pytest.approx(math.log10(3.0))
  assert [(b["step"], b["point"]) for b in ad["beyond"]] == [(1, {lam: 0.01})]
  assert ad["walk"]["final"] == {lam: 0.1} and ad["walk"]["stopped"] == "interior"
  assert len(ad["walk"]["steps"]) == 1
  # A walk that runs out of steps says so; a second walk trains nothing already trained.
  trained.clear()
  again = run.main(["--edge_check", "--edge_steps", "1", "--out", str(tmp_path),
                    "--workdir", str(tmp_path / "runs")])
  assert trained == []
  assert again["edge_check"]["ce"]["walk"]["stopped"] == "edge_steps reached"
  assert again["edge_check"]["ce"]["walk"]["final"] == {lr: 1e-2}
  with pytest.raises(ValueError, match="--edge_steps must be >= 1, got 0"):
    run.main(["--edge_check", "--edge_steps", "0", "--out", str(tmp_path)])


def test_a_diverged_beyond_point_is_recorded_and_does_not_extend_the_grid(tmp_path, monkeypatch):
  """CE's hand loss falls with the learning rate (1 / lr), so the walk would go on; lr 3e-2 hits
  the non-finite guard: it is stored as diverged (no replicas, never chosen), the choice stays at
  1e-2, whose only beyond point is the diverged one: the walk stops (nothing new to train)."""
  from labelwise.experiments.attribution import run
  lr, lam = "optimizer.learning_rate", "actdiff.lam"
  val = {"ce": lambda p: 1e-3 / p[lr], "actdiff": lambda p: 0.1 + abs(math.log10(p[lam] / 0.1))}
  _hand_results(tmp_path, val)
  trained = _hand_trainer(run, monkeypatch, val, diverge=[{lr: 3e-2}])
  res = run.main(["--edge_check", "--edge_steps", "4", "--only", "ce", "--out", str(tmp_path),
                  "--workdir", str(tmp_path / "runs")])
  assert trained == [("ce", {lr: 1e-2}), ("ce", {lr: 3e-2})]
  ce = res["edge_check"]["ce"]
  b = ce["beyond"][1]
  assert b["diverged"].startswith("non-finite") and b["replicas"] == [] and not b["better_on_val"]
  assert ce["walk"]["final"] == {lr: 1e-2} and ce["walk"]["stopped"] == "nothing new"
  assert ce["walk"]["final_at_edge"] == {lr: "highest"} and len(ce["walk"]["steps"]) == 2
  assert "actdiff" not in res["edge_check"]
