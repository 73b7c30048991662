"""DALL-E's milestone: the caption vocabularies and their bad inputs, the prompts, the judges,
reranking, the binary end to end on small runs of both datasets, and (slow) the dVAE's
acceptance on the tiny preset: held-out reconstruction error below the config's bound and
the token round trip encode(decode(tokens)) == tokens on at least the config's share of
held-out grid cells."""

import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

from configs import dalle as dalle_config
from experiments import dalle as dalle_binary
from lineage.data import shapes
from lineage.data.builders import digits as digits_builder
from lineage.milestones import clip as clip_milestone
from lineage.milestones.dalle import captions, datasets, judge, modes, stages

CFG = dalle_config.get_config("tiny")
DIGITS = dalle_config.get_config("digits")


def test_tokenizer_reads_the_shapes_vocabulary():
  tok = captions.WordTokenizer(captions.SHAPES_VOCAB)
  ids = tok.encode("A photo of a Large red circle in the top left.")
  assert tok.decode(ids) == "a photo of a large red circle in the top left"
  with pytest.raises(ValueError, match=r"outside the caption vocabulary: \['dog'\]"):
    tok.encode("a red dog")


def test_digits_vocabulary_reads_every_caption_the_builder_writes():
  tok = datasets.load(DIGITS.data).tokenizer
  for template in digits_builder.TEMPLATES:
    for label in range(10):
      text = digits_builder.caption(label, template)
      assert tok.decode(tok.encode(text)) == text
  with pytest.raises(ValueError, match="outside the caption vocabulary"):
    tok.encode("a red circle")


def test_digit_prompts_ask_for_every_digit_in_every_template():
  texts, targets = datasets.load(DIGITS.data).prompts()
  assert len(texts) == 10 * len(digits_builder.TEMPLATES) == len(set(texts))
  assert targets.shape == (len(texts), 1)
  for text, (digit,) in zip(texts, targets):
    assert text.split()[-1] == digits_builder.CLASS_NAMES[digit]


def test_digits_judge_reads_real_test_digits_and_refuses_wrong_labels():
  data = datasets.load(DIGITS.data)
  judge_, summary = data.train_judge(DIGITS.sample)
  assert summary["judge_digit_accuracy"] > 0.9
  test = data.eval()
  targets = data.eval_targets(len(test.images))
  assert judge_.matches(test.images, targets).mean() > 0.9
  assert judge_.matches(test.images, (targets + 1) % 10).mean() < 0.1


def test_unknown_dataset_is_refused():
  cfg = CFG.copy_and_resolve_references()
  cfg.data.name = "mnist"
  with pytest.raises(ValueError, match="unknown data.name 'mnist'; choose one of shapes, digits"):
    datasets.load(cfg.data)


def test_bad_captions():
  with pytest.raises(ValueError, match="caption 1 is empty"):
    stages.caption_tokens(CFG, ["a red circle", "   "])
  long = "a photo of a large red circle in the top left " + "a red circle"
  with pytest.warns(UserWarning, match="14 tokens, more than the text context of 12"):
    rows = stages.caption_tokens(CFG, [long])
  assert rows.shape == (1, 12)


def test_training_captions_name_colour_and_shape_and_never_a_held_out_pair():
  data = shapes.generate(200, 0, split="train")
  texts = captions.training_captions(data.labels, 0)
  for i, text in enumerate(texts):
    scene = shapes.names(data.labels, i)
    assert f"{scene['colour']} {scene['shape']}" in text
    assert (scene["shape"], scene["colour"]) not in shapes.HELD_OUT
  assert any("in the" in t for t in texts) and any("in the" not in t for t in texts)


def test_held_out_prompts_cover_every_held_out_pair_at_every_size_and_position():
  texts, targets = captions.held_out_prompts()
  assert len(texts) == len(shapes.HELD_OUT) * len(shapes.SIZES) * len(shapes.POSITIONS)
  pairs = {(shapes.SHAPES[s], shapes.COLOURS[c]) for s, c in targets}
  assert pairs == set(shapes.HELD_OUT)
  assert texts[0] == "a small red circle in the top left" and tuple(targets[0]) == (0, 0)


@pytest.mark.slow
def test_judge_reads_shape_and_colour_of_held_out_pairs():
  train = shapes.generate(1500, 3, split="all")
  shapes_judge = judge.ShapesJudge(judge.train(train.images, train.labels, steps=150))
  test = shapes.generate(200, 4, split="held_out")
  targets = np.stack([test.labels["shape"], test.labels["colour"]], 1)
  assert shapes_judge.matches(test.images, targets).mean() > 0.9
  wrong = targets.copy()
  wrong[:, 1] = (wrong[:, 1] + 1) % len(shapes.COLOURS)
  assert shapes_judge.matches(test.images, wrong).mean() < 0.1


def _small(cfg):
  cfg.dvae.train.update(steps=6, eval_every=6, checkpoint_every=6, log_every=3, batch_size=16)
  cfg.dvae.update(num_train=64, num_eval=32)
  cfg.data.update(num_train=64, num_eval=32)
  cfg.train.update(steps=6, eval_every=6, checkpoint_every=6, log_every=3, batch_size=16)
  cfg.model.update(num_layers=1, embed_dim=32, mlp_dim=64)
  cfg.sample.update(per_caption=2, judge_scenes=64, judge_steps=4, grid_captions=2,
                    bench_rounds=1, bench_batch=2)


def _tiny_clip(cfg, workdir):
  """The config's CLIP trained for two steps of a small model: enough to rerank with."""
  cfg = cfg.copy_and_resolve_references()
  cfg.model.update(vision_layers=1, text_layers=1, vision_width=32, text_width=32, embed_dim=16)
  cfg.data.update(num_train=64, num_eval=16)
  cfg.zero_shot.batch_size = 16
  cfg.probe.train_examples = 64
  cfg.train.update(batch_size=16, steps=2, eval_every=2, checkpoint_every=2, log_every=1,
                   eval_batches=1)
  clip_milestone.run("train", cfg, workdir)
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "digits"])
def test_binary_runs_every_mode_in_one_workdir(tmp_path, preset):
  workdir = str(tmp_path / "dalle")
  config = dalle_config.get_config(preset)
  config.sample.clip_dir = _tiny_clip(config.clip, str(tmp_path / "clip"))
  for mode in dalle_binary.dalle.MODES:
    with flagsaver.flagsaver(config=config.copy_and_resolve_references(), workdir=workdir,
                             mode=mode):
      _small(dalle_binary.FLAGS.config)
      dalle_binary.main(["dalle"])
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  for key in ("recon_mse", "token_roundtrip", "match_rate", "reranked_match_rate",
              "recon_match_rate"):
    assert 0 <= summary[key] <= 1, key
  assert summary["kv_cache_speedup"] > 0
  prompts = 40 if preset == "tiny" else 50
  assert summary["prompts"] == prompts and summary["per_caption"] == 2
  for name in ("samples.png", "samples_reranked.png"):
    assert os.path.exists(os.path.join(workdir, name))
  with open(os.path.join(workdir, "dvae", "summary.json")) as f:
    assert json.load(f)["steps"] == 6


@pytest.mark.slow
def test_tiny_dvae_meets_its_bounds_on_held_out_scenes(tmp_path):
  _, summary = modes.run_train_dvae(CFG.copy_and_resolve_references(), str(tmp_path))
  assert summary["recon_within_bound"], summary
  assert summary["roundtrip_within_bound"], summary


class _FakeEncoder:
  """CLIP's Encoder interface: an image's embedding is its mean colour, a caption's the
  colour it names (both normalised)."""
  COLOURS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}

  def embed_images(self, images):
    x = np.asarray(images, np.float32).mean(axis=(1, 2))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)

  def embed_texts(self, texts):
    return np.asarray([self.COLOURS[t.split()[1]] for t in texts])


def test_rerank_scores_each_image_against_its_own_caption():
  from lineage.milestones.dalle import rerank
  images = np.zeros((3, 4, 4, 3), np.uint8)
  images[0, ..., 0] = 200  # red
  images[1, ..., 1] = 200  # green
  images[2, ..., 0] = 200  # red, captioned blue
  scores = rerank.pair_scores(_FakeEncoder(), images, ["a red circle", "a green circle",
                                                       "a blue circle"])
  np.testing.assert_allclose(scores, [1.0, 1.0, 0.0], atol=1e-6)


def test_rerank_refuses_a_clip_dir_without_a_run(tmp_path):
  from lineage.milestones.dalle import rerank
  cfg = CFG.copy_and_resolve_references()
  cfg.sample.clip_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="holds no CLIP run"):
    rerank.scorer(cfg, str(tmp_path))
