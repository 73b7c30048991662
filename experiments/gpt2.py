"""GPT-2: train, evaluate, sample or export a decoder LM.

  python -m experiments.gpt2 --config=configs/gpt2.py:tiny --workdir=runs/gpt2_tiny \
      [--mode=train|eval|zero_shot|sample|export] [--config.train.steps=...]
Zero-shot, sampling and export read --config.init_from (DIR[@STEP] or hf:PATH) if given,
else the run in --workdir; zero_shot writes --workdir/zero_shot/{summary.json,report.md}.
See configs/gpt2.py for the presets and what to expect.
"""

import codecs
import json
import os
import re
import sys

import jax
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from configs import gpt2 as gpt2_config
from lineage import sample as sample_lib
from lineage.data import tokenizers
from lineage.eval import zero_shot
from lineage.interop import hf_gpt2
from lineage.train import distributed, init_from, loop
from lineage.train import lm

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/gpt2.py:PRESET", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, summary.")
flags.DEFINE_string("prompt", None, "Prompt for --mode=sample (overrides config.sample.prompt).")
flags.DEFINE_string("prompt_file", None, "UTF-8 file whose text is the prompt (--mode=sample).")
flags.DEFINE_enum("sample_preset", "", ["", "tldr"],
                  "tldr: GPT-2's summarization protocol (config.sample.tldr) on the prompt.")
flags.DEFINE_float("temperature", None, "Overrides config.sample.temperature.")
flags.DEFINE_integer("top_k", None, "Overrides config.sample.top_k (0: off).")
flags.DEFINE_float("top_p", None, "Overrides config.sample.top_p (1.0: off).")
flags.DEFINE_integer("max_new_tokens", None, "Overrides config.sample.max_new_tokens.")
flags.DEFINE_integer("num_samples", None, "Overrides config.sample.num_samples.")
flags.DEFINE_integer("seed", None, "Overrides config.sample.seed.")
flags.DEFINE_string("model_name", None,
                    "Row of this model in the zero-shot report (default: the preset name).")
flags.DEFINE_string("export_dir", None, "Where --mode=export writes the Hugging Face directory.")
distributed.define_flags()
SAMPLE_OVERRIDES = ("temperature", "top_k", "top_p", "max_new_tokens", "num_samples", "seed")
GPT2_VOCAB = 50257


def build(cfg, workdir):
  """lm.build, on process 0 first: it prepares datasets and trains tokenizers that the other
  processes then read rather than race to write."""
  if jax.process_count() == 1:
    return lm.build(cfg, workdir)
  parts = lm.build(cfg, workdir) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices("experiments.gpt2: data prepared")
  return parts or lm.build(cfg, workdir)


def weights_source(cfg, workdir):
  """--config.init_from, else the run's own latest checkpoint in --workdir."""
  source = cfg.init_from or workdir
  if not source:
    raise app.UsageError(f"--mode={FLAGS.mode} needs --config.init_from=DIR[@STEP] or "
                         "hf:PATH, or the --workdir of a trained run")
  return source


def source_tokenizer(cfg, source, model_cfg):
  """GPT-2's BPE for Hugging Face weights with GPT-2's vocabulary (the released models),
  else config.data.tokenizer; a trained bpe tokenizer lives in the source run's directory."""
  hf = source.startswith(init_from.HF_PREFIX)
  name = "gpt2" if hf and model_cfg.vocab_size == GPT2_VOCAB else cfg.data.tokenizer
  tokenizer = tokenizers.make_tokenizer(name, vocab_dir=cfg.data.vocab_dir or None,
                                        workdir=None if hf else source.partition("@")[0])
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the {name} tokenizer has {tokenizer.vocab_size} tokens but the model "
                     f"only {model_cfg.vocab_size}; set --config.data.tokenizer to the one "
                     "the weights were trained with")
  return tokenizer


def sampling_settings(cfg):
  """config.sample, then --sample_preset, then the explicit sampling flags."""
  settings = {k: cfg.sample[k] for k in ("greedy",) + SAMPLE_OVERRIDES}
  if FLAGS.sample_preset == "tldr":
    tldr = cfg.sample.tldr
    settings.update(greedy=False, temperature=tldr.temperature, top_k=tldr.top_k,
                    top_p=tldr.top_p, max_new_tokens=tldr.max_new_tokens)
  settings.update({k: getattr(FLAGS, k) for k in SAMPLE_OVERRIDES if getattr(FLAGS, k) is not None})
  return settings


def prompt_text(cfg):
  if FLAGS.prompt is not None and FLAGS.prompt_file:
    raise app.UsageError("give --prompt or --prompt_file, not both")
  if not FLAGS.prompt_file:
    return FLAGS.prompt if FLAGS.prompt is not None else cfg.sample.prompt
  try:
    with open(FLAGS.prompt_file, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise app.UsageError(f"--prompt_file={FLAGS.prompt_file}: {e.strerror}") from None
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"--prompt_file={FLAGS.prompt_file} is not valid UTF-8 at byte {e.start} "
                     f"({e.reason}); convert it with e.g. `iconv -f latin1 -t utf-8`") from None


def tldr_prompt(cfg, tokenizer, article, max_new_tokens, context):
  """Article tokens + "\nTL;DR:"; a long article keeps its beginning, cut to fit the context."""
  suffix = tokenizer.encode(cfg.sample.tldr.suffix)
  room = context - max_new_tokens - len(suffix)
  ids = tokenizer.encode(article)
  if len(ids) > room:
    print(f"(the article's {len(ids)} tokens are cut to its first {room}, to leave room for "
          f"{max_new_tokens} new tokens in the context of {context})", file=sys.stderr)
  return ids[:room] + suffix


def first_sentences(text, count):
  """The summary of GPT-2's TL;DR protocol: the first `count` generated sentences."""
  sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
  return " ".join(sentences[:count])


def stream_completion(decoder, tokenizer, prompt_ids, max_new_tokens, rng):
  """Prints tokens as they are generated (UTF-8 split across tokens is held back until
  whole) and returns the completion's text."""
  utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
  ids = []
  for tokens in decoder.stream([prompt_ids], max_new_tokens, rng=rng):
    if tokens[0] < 0:
      break
    ids.append(int(tokens[0]))
    print(utf8.decode(tokenizer.decode_bytes(ids[-1:])), end="", flush=True)
  print(utf8.decode(b"", final=True), flush=True)
  return tokenizer.decode(ids)


def run_sample(cfg, workdir):
  source = weights_source(cfg, workdir)
  model_cfg, params = init_from.load_model(source, cfg.model)
  tokenizer = source_tokenizer(cfg, source, model_cfg)
  s = sampling_settings(cfg)
  text = prompt_text(cfg)
  prompt_ids = (tldr_prompt(cfg, tokenizer, text, s["max_new_tokens"], model_cfg.context)
                if FLAGS.sample_preset == "tldr" else tokenizer.encode(text))
  decoder = sample_lib.Decoder(model_cfg, params, sample_lib.SamplingConfig(
      temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"], greedy=s["greedy"],
      stop_tokens=(tokenizer.eot_id,)))
  rng = jax.random.PRNGKey(s["seed"])
  for i in range(s["num_samples"]):
    print(f"--- sample {i} ---\n{tokenizer.decode(prompt_ids)}", end="", flush=True)
    completion = stream_completion(decoder, tokenizer, prompt_ids, s["max_new_tokens"],
                                   jax.random.fold_in(rng, i))
    if FLAGS.sample_preset == "tldr":
      print(f"--- summary {i} ---\n"
            f"{first_sentences(completion, cfg.sample.tldr.summary_sentences)}")


def run_export(cfg, workdir):
  if not FLAGS.export_dir:
    raise app.UsageError("--mode=export needs --export_dir=OUT, the directory to write")
  source = weights_source(cfg, workdir)
  model_cfg, params = init_from.load_model(source, cfg.model)
  # Hugging Face sources keep GPT-2's convention, end of text = the last id.
  eot_id = (None if source.startswith(init_from.HF_PREFIX)
            else source_tokenizer(cfg, source, model_cfg).eot_id)
  if jax.process_index() == 0:
    out = os.path.abspath(hf_gpt2.export_hf(model_cfg, params, FLAGS.export_dir, eot_id))
    print(f"exported {source} to {out}\nload it with: transformers.GPT2LMHeadModel."
          f"from_pretrained({out!r})")


def run_zero_shot(cfg, workdir):
  """GPT-2's Table 3 protocol; evaluating more models into the same workdir adds rows."""
  source = weights_source(cfg, workdir)
  model_cfg, params = init_from.load_model(source, cfg.model)
  tokenizer = source_tokenizer(cfg, source, model_cfg)
  summary = zero_shot.run(cfg, model_cfg, params, tokenizer, os.path.join(workdir, "zero_shot"),
                          model_name=FLAGS.model_name or cfg.preset)
  print(json.dumps(summary))


def run_eval(cfg, workdir):
  parts = build(cfg, workdir)
  params = lm.restore_params(cfg, workdir, parts)
  result = loop.evaluate(loop.build_trainer(cfg, parts.task), params, parts.task.eval_data())
  print(json.dumps({"eval": result}))
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)


def run_train(cfg, workdir):
  loop.train(cfg, workdir, build(cfg, workdir).task)


# --mode=NAME -> NAME's function and whether it needs --workdir.
MODES = {"train": (run_train, True), "eval": (run_eval, True),
         "zero_shot": (run_zero_shot, True), "sample": (run_sample, False),
         "export": (run_export, False)}
flags.DEFINE_enum("mode", "train", list(MODES), "What to do.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
  run, needs_workdir = MODES[FLAGS.mode]
  if needs_workdir and not FLAGS.workdir:
    raise app.UsageError(f"--mode={FLAGS.mode} needs --workdir=DIR")
  distributed.initialize_from_flags()
  cfg = FLAGS.config
  gpt2_config.resolve_dtype(cfg)
  run(cfg, FLAGS.workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  sys.exit(app.run(main))
