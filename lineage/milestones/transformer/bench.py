"""Speed of the paper's decoding (beam 4, length penalty 0.6) against Hugging Face's: sentences
per second translating Multi30k's test2016 with our Transformer and with a transformers
MarianMTModel of the same shape and vocabulary size, both with random weights, alternating in
one run (lineage.bench.timing). Random weights rarely choose the stop token at the same step,
so neither side may stop early: ours searches with a stop token outside the vocabulary and
transformers' generate is held to exactly as many new tokens (min = max), the longest source's
length + extra_length in each batch, the step count our search also runs.

  python -c "from configs import transformer as c; from lineage.milestones.transformer import \
      bench; cfg = c.get_config('tiny'); cfg.model.vocab_size = 4000; \
      cfg.data.update(name='multi30k', manual_dir='../shared/data/multi30k'); \
      print(bench.bench_translate(cfg, sentences=100))"

torch and transformers are test dependencies: they are imported here, when the baseline is
built.
"""

import statistics

import jax
import jax.numpy as jnp

from lineage.bench import timing
from lineage.data import tokenizers
from lineage.milestones.transformer import task as task_lib
from lineage.models import transformer


def marian(cfg: transformer.TransformerConfig, max_positions, seed):
  """A transformers MarianMTModel shaped like `cfg` (post-LN, sinusoidal positions, scaled
  and shared embeddings, ReLU), randomly initialised, in eval mode."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  config = transformers.MarianConfig(
      vocab_size=cfg.vocab_size, decoder_vocab_size=cfg.vocab_size, d_model=cfg.embed_dim,
      encoder_layers=cfg.num_layers, decoder_layers=cfg.num_layers,
      encoder_attention_heads=cfg.num_heads, decoder_attention_heads=cfg.num_heads,
      encoder_ffn_dim=cfg.mlp_dim, decoder_ffn_dim=cfg.mlp_dim, activation_function="relu",
      max_position_embeddings=max_positions, scale_embedding=True,
      share_encoder_decoder_embeddings=True, tie_word_embeddings=True, pad_token_id=0,
      eos_token_id=cfg.vocab_size - 1, decoder_start_token_id=cfg.vocab_size - 1,
      forced_eos_token_id=None)
  return transformers.MarianMTModel(config).eval()


def _hf_translate(model, sources, beam_size, alpha, extra_length):
  """transformers' beam search over each batch, exactly max(len) + extra_length new tokens."""
  import torch  # pylint: disable=import-outside-toplevel
  longest = max(len(s) for s in sources)
  ids = torch.zeros((len(sources), longest), dtype=torch.long)
  mask = torch.zeros_like(ids)
  for row, s in enumerate(sources):
    ids[row, :len(s)] = torch.tensor(s)
    mask[row, :len(s)] = 1
  new = longest + extra_length
  with torch.inference_mode():
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam_size,
                         length_penalty=alpha, max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, early_stopping=False)
  return out[:, 1:]  # without the decoder's start token


def bench_translate(cfg, sentences=1000, batch_size=100, pairs=3, seed=0, torch_threads=(1, 0)):
  """Sentences/s of beam-searched translation (cfg.decode) of the test split's first
  `sentences` sources (cfg.data; Multi30k in docs/results/transformer.md) by cfg.model with random
  weights and by transformers, and the median over `pairs` rounds of their seconds over ours
  (above 1: ours is faster). The BPE vocabulary of cfg.model.vocab_size tokens is trained on
  the training pairs. A round translates every sentence once, in batches of batch_size; a
  first untimed round of each absorbs compilation and checks the lengths. transformers runs
  once per entry of torch_threads (0: torch's default) and the ratio is to the fastest: on a
  busy machine torch's OpenMP threads wait on each other, and one thread can be many times
  faster than two."""
  vocab_size = cfg.model.vocab_size
  texts = [s for s, _ in task_lib.text_pairs(cfg.data, "test")][:sentences]
  tok = tokenizers.train_bpe(
      [t for pair in task_lib.text_pairs(cfg.data, "train") for t in pair], vocab_size)
  sources = [task_lib.source_ids(tok, t) for t in texts]
  model_cfg = task_lib.model_config(cfg, vocab_size)
  dummy = jnp.zeros((1, 8), jnp.int32)
  params = jax.jit(lambda r: transformer.Transformer(model_cfg).init(r, dummy, dummy)["params"])(
      jax.random.PRNGKey(seed))
  d = cfg.decode
  batches = [sources[i:i + batch_size] for i in range(0, len(sources), batch_size)]
  never = vocab_size  # an id no logit has: every row runs to its limit

  def ours(_):
    return [transformer.translate(model_cfg, params, batch, bos_id=tok.eot_id, eos_id=never,
                                  beam_size=d.beam_size, alpha=d.alpha,
                                  extra_length=d.extra_length) for batch in batches]

  hf_model = marian(model_cfg, max(len(s) for s in sources) + d.extra_length + 2, seed)
  import torch  # pylint: disable=import-outside-toplevel
  default_threads = torch.get_num_threads()

  def theirs(threads):
    def run(_):
      torch.set_num_threads(threads or default_threads)
      try:
        return [_hf_translate(hf_model, batch, d.beam_size, d.alpha, d.extra_length)
                for batch in batches]
      finally:
        torch.set_num_threads(default_threads)
    return run

  for ids, batch in zip(ours(0), batches):
    if [len(h) for h in ids] != [len(s) + d.extra_length for s in batch]:
      raise RuntimeError("our search stopped before a row's limit")
  for out, batch in zip(theirs(torch_threads[0])(0), batches):
    if out.shape[1] != max(len(s) for s in batch) + d.extra_length:
      raise RuntimeError(f"generate made {out.shape[1]} tokens, not the longest source + "
                         f"{d.extra_length}")
  names = {f"transformers, {n or default_threads} thread(s)": n for n in torch_threads}
  rounds = timing.alternating({"lineage": ours, **{name: theirs(n) for name, n in
                                                   names.items()}}, pairs, 1, 0)
  fastest = min(names, key=lambda name: statistics.median(rounds[name]))
  ratios = [t / o for t, o in zip(rounds[fastest], rounds["lineage"])]
  per_sec = {name: len(sources) / statistics.median(seconds) for name, seconds in rounds.items()}
  return {"what": "translate", "sentences": len(sources), "batch_size": batch_size,
          "beam_size": d.beam_size, "extra_length": d.extra_length, "vocab_size": vocab_size,
          "parameters": transformer.count_params(params),
          "sentences_per_sec": per_sec["lineage"], "baseline": fastest,
          "hf_sentences_per_sec": per_sec[fastest], "sentences_per_sec_by_side": per_sec,
          "ratio": statistics.median(ratios), "pair_ratios": ratios, "seconds": rounds,
          "backend": jax.default_backend()}
