"""GPT-2's --mode=sample: prompts from a flag or a file, the TL;DR summarization protocol,
and completions streamed as they are generated (lineage.decode)."""

import dataclasses
import re
import sys
from typing import Optional

import jax

from lineage import decode
from lineage.milestones.gpt2 import weights
from lineage.models import gpt

SAMPLE_KEYS = ("temperature", "top_k", "top_p", "max_new_tokens", "num_samples", "seed")


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """What the binary's flags say about sampling; None leaves config.sample's value."""
  prompt: Optional[str] = None
  prompt_file: Optional[str] = None
  preset: str = ""  # "tldr": GPT-2's summarization protocol (config.sample.tldr)
  temperature: Optional[float] = None
  top_k: Optional[int] = None
  top_p: Optional[float] = None
  max_new_tokens: Optional[int] = None
  num_samples: Optional[int] = None
  seed: Optional[int] = None


def settings(cfg, options: SampleOptions):
  """config.sample, then the preset, then the explicit flags."""
  result = {k: cfg.sample[k] for k in SAMPLE_KEYS}
  if options.preset == "tldr":
    tldr = cfg.sample.tldr
    result.update(temperature=tldr.temperature, top_k=tldr.top_k, top_p=tldr.top_p,
                  max_new_tokens=tldr.max_new_tokens)
  elif options.preset:
    raise ValueError(f"--sample_preset={options.preset}: the presets are tldr")
  result.update({k: getattr(options, k) for k in SAMPLE_KEYS if getattr(options, k) is not None})
  return result


def prompt_text(cfg, options: SampleOptions):
  if options.prompt is not None and options.prompt_file:
    raise ValueError("give --prompt or --prompt_file, not both")
  if not options.prompt_file:
    return options.prompt if options.prompt is not None else cfg.sample.prompt
  try:
    with open(options.prompt_file, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise ValueError(f"--prompt_file={options.prompt_file}: {e.strerror}") from None
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"--prompt_file={options.prompt_file} is not valid UTF-8 at byte {e.start} "
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


def generator(model_cfg):
  return decode.Generator(*gpt.decoding(model_cfg), model_cfg.context)


def sample_texts(model_cfg, params, tokenizer, prompts, sample_cfg, **overrides):
  """Decoded completions of text prompts under config.sample (and `overrides` of it)."""
  s = {**sample_cfg.to_dict(), **overrides}
  completions = generator(model_cfg).generate(
      params, [tokenizer.encode(p) for p in prompts], s["max_new_tokens"],
      sampling=decode.Sampling(s["temperature"], s["top_k"], s["top_p"]),
      rng=jax.random.PRNGKey(s["seed"]), stop_tokens=(tokenizer.eot_id,))
  return [tokenizer.decode(c) for c in completions]


def _emitted(token, eot_id):
  """The ids a streamed step adds to the text: none once stopped or at the stop token."""
  return [] if token < 0 or token == eot_id else [int(token)]


def run_sample(cfg, workdir, options: SampleOptions):
  """Streams `num_samples` completions of the prompt (with the TL;DR summary if asked)."""
  source = weights.weights_source(cfg, workdir, "sample")
  s = settings(cfg, options)
  sampling = decode.Sampling(s["temperature"], s["top_k"], s["top_p"])  # bad values fail early
  text = prompt_text(cfg, options)
  model_cfg, params = weights.load_model(cfg, source)
  tokenizer = weights.source_tokenizer(cfg, source, model_cfg)
  prompt_ids = (tldr_prompt(cfg, tokenizer, text, s["max_new_tokens"], model_cfg.context)
                if options.preset == "tldr" else tokenizer.encode(text))
  gen = generator(model_cfg)
  rng = jax.random.PRNGKey(s["seed"])
  for i in range(s["num_samples"]):
    print(f"--- sample {i} ---\n{tokenizer.decode(prompt_ids)}", end="", flush=True)
    stream = decode.IncrementalText(tokenizer.decode_bytes)
    printed = lambda tokens: print(stream.push(_emitted(tokens[0], tokenizer.eot_id)),
                                   end="", flush=True)
    [completion] = gen.generate(params, [prompt_ids], s["max_new_tokens"], sampling=sampling,
                                rng=jax.random.fold_in(rng, i), stop_tokens=(tokenizer.eot_id,),
                                on_tokens=printed)
    print(stream.flush(), flush=True)
    if options.preset == "tldr":
      print(f"--- summary {i} ---\n"
            f"{first_sentences(tokenizer.decode(completion), cfg.sample.tldr.summary_sentences)}")
