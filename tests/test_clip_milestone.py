"""CLIP's task: the loss over a batch sharded on 8 devices equals one device's, micro-batches
are refused, zero-shot prompt ensembles and the linear probe; the end-to-end runs are slow."""

import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import clip as clip_config
from lineage.milestones import clip as clip_milestone
from lineage.milestones.clip import task as task_lib
from lineage.milestones.clip import zero_shot
from lineage.train import loop, sharding


def _small_config(**train):
  cfg = clip_config.get_config("tiny")
  cfg.model.update(vision_layers=1, text_layers=1, vision_width=32, text_width=32, embed_dim=16,
                   patch_size=8)
  cfg.data.update(num_train=64, num_eval=16)
  cfg.zero_shot.batch_size = 16
  cfg.probe.train_examples = 64
  cfg.train.update(batch_size=16, **train)
  return cfg


@pytest.mark.slow
def test_sharded_loss_equals_one_device(tmp_path):
  """The logits span the global batch, so every device's captions are every image's negatives."""
  assert jax.device_count() == 8, "conftest forces 8 CPU devices"
  cfg = _small_config()
  cfg.mesh.update(data=4, fsdp=2, tensor=1)
  task = task_lib.build_task(cfg, str(tmp_path))
  trainer = loop.build_trainer(cfg, task)
  state = trainer.init_state(jax.random.PRNGKey(0))
  batch = next(task.train_data)
  with jax.set_mesh(trainer.mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    sharded = trainer.eval_step(state.params, loop.device_batch(batch, trainer.mesh))
  assert len(loop.device_batch(batch, trainer.mesh)["images"].sharding.device_set) == 8
  params = jax.device_get(state.params)
  loss = jax.jit(task.loss_fn, static_argnums=3)
  single = loss(params, batch, jax.random.PRNGKey(0), True)[0]
  np.testing.assert_allclose(sharded["loss_sum"], single, rtol=1e-5)
  # Each device's eighth of the batch on its own would see 2 pairs: a different, lower loss.
  local = np.mean([loss(params, {k: v[i:i + 2] for k, v in batch.items()},
                        jax.random.PRNGKey(0), True)[0] / 2 for i in range(0, 16, 2)])
  assert local < single / 16 - 0.5


def test_micro_batches_are_refused(tmp_path):
  cfg = _small_config(micro_batches=2)
  with pytest.raises(ValueError, match="train.micro_batches=2: CLIP's contrastive loss compares"):
    task_lib.build_task(cfg, str(tmp_path))


class _FakeEncoder:
  """Embeds a prompt by the word it names: class c's prompts lean to axis c, each template
  adding its own noise, so averaging templates cancels the noise."""

  def __init__(self, names, noise):
    self.names, self.noise = names, noise

  def embed_texts(self, prompts):
    rows = []
    for p in prompts:
      template = p.replace(next(n for n in self.names if n in p), "{}")
      v = np.eye(len(self.names))[next(i for i, n in enumerate(self.names) if n in p)]
      v = v + self.noise[template]
      rows.append(v / np.linalg.norm(v))
    return np.asarray(rows)


def test_prompt_ensemble_averages_normalised_embeddings():
  names = ("circle", "square", "cross")
  templates = ["a {}", "a photo of a {}", "there is a {}"]
  rng = np.random.default_rng(0)
  encoder = _FakeEncoder(names, {t: rng.normal(0, 0.6, 3) for t in templates})
  classes = zero_shot.class_embeddings(encoder, names, templates)
  embedded = encoder.embed_texts([t.format(n) for n in names for t in templates]).reshape(3, 3, 3)
  expected = embedded.mean(1) / np.linalg.norm(embedded.mean(1), axis=1, keepdims=True)
  np.testing.assert_allclose(classes, expected, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(classes, axis=1), 1, rtol=1e-6)
  images = np.eye(3)
  assert list(zero_shot.classify(images, classes)) == [0, 1, 2]
  matrix = zero_shot.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
  assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def _validation(encoder, names, n, seed):
  """Images that sit on their class's axis, with some noise: (embeddings, labels)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(len(names), size=n)
  images = np.eye(len(names))[labels] + rng.normal(0, 0.35, (n, len(names)))
  return images / np.linalg.norm(images, axis=1, keepdims=True), labels


def _accuracy(encoder, names, templates, data):
  classes = zero_shot.class_embeddings(encoder, names, templates)
  return np.mean(zero_shot.classify(data[0], classes) == data[1])


def test_select_templates_builds_an_ensemble_on_validation():
  names = ("circle", "square", "triangle", "diamond")
  rng = np.random.default_rng(1)
  templates = [f"t{i} {{}}" for i in range(8)] + ["misleading {}"]
  noise = {t: rng.normal(0, 0.5, (len(names), len(names))) for t in templates}
  noise["misleading {}"] = 3 * np.roll(np.eye(len(names)), 1, axis=1)  # names the next class
  encoder = _FakeEncoder(names, {})
  encoder.embed_texts = lambda prompts: _noisy_embeddings(names, noise, prompts)
  validation, fresh = (_validation(encoder, names, 2000, seed) for seed in (2, 3))
  chosen = zero_shot.select_templates(encoder, names, templates, [validation], max_templates=6)
  assert 2 <= len(chosen) <= 6 and "misleading {}" not in chosen
  assert len(set(chosen)) == len(chosen) and set(chosen) <= set(templates)
  best_single = max(_accuracy(encoder, names, [t], validation) for t in templates)
  assert _accuracy(encoder, names, chosen, validation) > best_single
  # Chosen on one sample, better on another than the best single template there.
  assert _accuracy(encoder, names, chosen, fresh) > max(
      _accuracy(encoder, names, [t], fresh) for t in templates)
  # Where every template classifies all, the first is kept, alone when one may do (ties:
  # the earlier candidate, the shorter ensemble).
  noise["exact {}"] = np.zeros((len(names), len(names)))
  exact = zero_shot.select_templates(encoder, names, ["exact {}"] + templates,
                                     [(np.eye(4), np.arange(4))], min_templates=1)
  assert exact == ["exact {}"]
  with pytest.raises(ValueError, match="cannot make an ensemble of 2"):
    zero_shot.select_templates(encoder, names, ["t0 {}", "t0 {}"], [validation])
  with pytest.raises(ValueError, match="min_templates=3, max_templates=2"):
    zero_shot.select_templates(encoder, names, templates, [validation], 2, 3)
  with pytest.raises(ValueError, match="needs validation images"):
    zero_shot.select_templates(encoder, names, templates, [])


def _noisy_embeddings(names, noise, prompts):
  """Prompt "<template> <name>": the name's axis plus that template's noise row for it."""
  rows = []
  for p in prompts:
    c = next(i for i, n in enumerate(names) if p.endswith(n))
    v = np.eye(len(names))[c] + noise[p[:-len(names[c])] + "{}"][c]
    rows.append(v / np.linalg.norm(v))
  return np.asarray(rows)


def _split(labels, names=("circle", "square")):
  """Images that carry their label in one pixel, for _LabelEncoder."""
  images = np.zeros((len(labels), 32, 32, 3), np.uint8)
  images[:, 0, 0, 0] = labels
  return task_lib.Split(images=images, captions=[""] * len(labels),
                        labels={"shape": np.asarray(labels)}, classes={"shape": ("shape", names)})


class _LabelEncoder:
  """Embeds an image on its label's axis; prompts by _noisy_embeddings."""

  def __init__(self, names, noise):
    self.names, self.noise = names, noise

  def embed_images(self, images):
    return np.eye(len(self.names))[images[:, 0, 0, 0]]

  def embed_texts(self, prompts):
    return _noisy_embeddings(self.names, self.noise, prompts)


def test_evaluator_selects_only_on_validation_splits():
  cfg = _small_config()
  cfg.zero_shot.templates = {"shape": "a photo of a {}|a {}"}
  cfg.zero_shot.select = {"shape": "there is a {}"}
  cfg.probe.train_examples = 0
  held_out, validation = _split([0, 1]), _split([1, 0])
  evaluator = zero_shot.Evaluator(cfg, None, None, None, {"held_out": held_out},
                                  {"held_out_validation": validation})
  assert evaluator.candidates == {"shape": ["a photo of a {}", "a {}", "there is a {}"]}
  # "a photo of a {}" names the other class: the validation splits keep it out of the ensemble.
  flipped = 0.5 * np.roll(np.eye(2), 1, axis=1) - 2 * np.eye(2)
  encoder = _LabelEncoder(("circle", "square"), {"a photo of a {}": flipped,
                                                 "a {}": np.zeros((2, 2)),
                                                 "there is a {}": np.zeros((2, 2))})
  assert evaluator.ensembles(encoder) == {"shape": ["a {}", "there is a {}"]}
  p = evaluator.zero_shot(encoder)["held_out"]["shape"]
  assert list(p.labels) == [0, 1] and list(p.ensemble) == [0, 1] and list(p.single) == [1, 0]
  assert p.fixed is not None
  with pytest.raises(ValueError, match=r"\['held_out'\] are in both zero_shot.splits and "
                     "zero_shot.select_splits"):
    zero_shot.Evaluator(cfg, None, None, None, {"held_out": held_out}, {"held_out": held_out})
  with pytest.raises(ValueError, match="names none"):
    zero_shot.Evaluator(cfg, None, None, None, {"held_out": held_out}, {})
  cfg.zero_shot.select = {"size": "a {}"}
  with pytest.raises(ValueError, match=r"zero_shot.select names \['size'\]"):
    zero_shot.Evaluator(cfg, None, None, None, {"held_out": held_out}, {"v": validation})


def test_held_out_validation_split_is_its_own_draw(tmp_path):
  from lineage.data import shapes
  cfg = _small_config()
  split = task_lib.load(cfg, task_lib.HELD_OUT_VALIDATION)
  assert len(split.images) == cfg.data.num_eval and split.classes == task_lib.CLASSES["shapes"]
  assert shapes.held_out_mask(split.labels).all()
  for offset in range(4):  # the builder's train, validation, test and held_out seeds
    other = shapes.generate(cfg.data.num_eval, cfg.data.seed + offset, split="held_out")
    assert not np.array_equal(other.images, split.images)
  cfg.data.name = "digits"
  with pytest.raises(ValueError, match="data.name=shapes only, not 'digits'"):
    task_lib.load(cfg, task_lib.HELD_OUT_VALIDATION)


def test_linear_probe_separates_classes():
  rng = np.random.default_rng(0)
  centres = rng.normal(0, 3, (4, 8))
  labels = rng.integers(4, size=400)
  features = centres[labels] + rng.normal(size=(400, 8))
  accuracy, c = zero_shot.linear_probe(features[:300], labels[:300],
                                       {"test": (features[300:], labels[300:]),
                                        "noise": (rng.normal(size=(100, 8)), labels[300:])})
  assert accuracy["test"] > 0.9 and accuracy["noise"] < 0.5 and c in zero_shot.PROBE_C_GRID
  with pytest.raises(ValueError, match="single class"):
    zero_shot.linear_probe(features[:10], np.zeros(10, int), {})


def test_evaluator_rejects_unknown_task(tmp_path):
  cfg = _small_config()
  cfg.zero_shot.templates.texture = "a {} thing"
  with pytest.raises(ValueError, match="names task 'texture'"):
    task_lib.build_task(cfg, str(tmp_path))


def _trained(tmp_path_factory, preset, steps):
  workdir = tmp_path_factory.mktemp(preset)
  cfg = clip_config.get_config(preset)
  cfg.train.steps = steps
  _, summary = clip_milestone.run("train", cfg, str(workdir))
  return cfg, str(workdir), summary


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
  return _trained(tmp_path_factory, "tiny", clip_config.get_config("tiny").train.steps)


@pytest.mark.slow
def test_shapes_zero_shot_on_held_out_pairs(shapes_run):
  cfg, workdir, summary = shapes_run
  assert summary["eval_zero_shot_shape_held_out"] >= 0.8, summary
  # The prompt ensemble (for shape chosen on the validation splits) is at least as good as
  # "a photo of a {}" alone on the 5,000 held-out-pair scenes, which it was not chosen on.
  assert summary["eval_zero_shot_shape_held_out"] >= (
      summary["eval_zero_shot_shape_held_out_single"]), summary
  assert summary["eval_zero_shot_colour_held_out"] >= (
      summary["eval_zero_shot_colour_held_out_single"]), summary
  assert 2 <= summary["eval_zero_shot_shape_templates"] <= cfg.zero_shot.select_max
  assert 0 < summary["eval_zero_shot_shape_held_out_fixed"] <= 1
  # The probe, fitted on training images alone, takes "red" as evidence against "circle":
  # 0.765 on held-out pairs, 0.994 on seen ones.
  assert summary["eval_probe_shape_held_out"] > 0.6 and summary["eval_probe_shape_test"] > 0.95
  result = clip_milestone.run("zero_shot", cfg, workdir)
  # The same parameters, now on one device: reductions in another order may move an image
  # (and so, rarely, the greedy choice of templates).
  shape = result["shape_held_out"]
  np.testing.assert_allclose(shape["single_template"],
                             summary["eval_zero_shot_shape_held_out_single"], atol=0.005)
  assert shape["single"] == "a photo of a {}" and shape["accuracy"] >= shape["single_template"]
  assert shape["chosen_on"] == ["held_out_validation", "validation"]
  assert set(shape["templates"]) <= set(cfg.zero_shot.select.shape.split("|")) | set(
      cfg.zero_shot.templates.shape.split("|"))
  assert os.path.exists(os.path.join(workdir, "confusion_shape_held_out.png"))
  assert json.load(open(os.path.join(workdir, "zero_shot.json")))["shape_held_out"]["examples"] \
      == cfg.data.num_eval


@pytest.mark.slow
def test_trained_run_loads_for_reranking(shapes_run):
  from lineage.data import shapes
  _, workdir, _ = shapes_run
  encoder = clip_milestone.load(workdir)
  data = shapes.generate(32, seed=123, split="held_out", mention=("colour",))
  scores = encoder.scores(data.images, data.captions)
  assert scores.shape == (32, 32)
  best = np.argmax(scores, axis=1)  # captions repeat, so a caption like its own will do
  for attr in ("shape", "colour"):
    assert np.mean(data.labels[attr][best] == data.labels[attr]) > 0.8, attr
  with pytest.raises(ValueError, match=r"expects \[batch, 32, 32, 3\]"):
    encoder.embed_images(np.zeros((2, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match="caption 0 is empty"):
    encoder.embed_texts([""])


@pytest.mark.slow
def test_digits_reports_zero_shot_and_probe_side_by_side(tmp_path_factory):
  _, _, summary = _trained(tmp_path_factory, "digits", 30)
  for key in ("eval_zero_shot_digit_test", "eval_zero_shot_digit_test_single",
              "eval_probe_digit_test"):
    assert 0 <= summary[key] <= 1, summary
  assert summary["eval_probe_digit_test"] > 0.5  # real features of real digits, even this early


def test_binary_refuses_bad_mode_and_missing_run(tmp_path):
  from absl import app
  from tests import binaries
  with pytest.raises(app.UsageError, match="--mode=sample is not a mode of this binary"):
    binaries.run_in_process("clip", "--config=configs/clip.py:tiny", f"--workdir={tmp_path}",
                            "--mode=sample")
  with pytest.raises(FileNotFoundError, match="no config.json in"):
    clip_milestone.load(str(tmp_path))
