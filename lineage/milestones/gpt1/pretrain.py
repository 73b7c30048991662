"""Generative pre-training, GPT-1's first stage and the whole of GPT-2's and GPT-3's training: a GPT
trained by next-token prediction on a text corpus.

`build(cfg)` gives the model, its tokenizer, the data and the loop's Task; each milestone adds
its own importers (`hf:` for its Hugging Face format) and evaluation hook. It lives in the
earliest milestone that pre-trains this way, GPT-1; GPT-2 imports it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lineage.data import builders, lm_batches, pipeline, tokenizers
from lineage.data.builders import synthetic_text
from lineage.models import config as model_config_lib
from lineage.models import gpt
from lineage.train import lm_loss, loop


@dataclasses.dataclass
class LMParts:
  """A configured language model with its data, ready for the loop or the sampler.

  train_source / eval_source are the TFDS sources of a named dataset; for
  `text_file` they are None and train_tokens / eval_tokens hold the file's tokens.
  """
  model_cfg: gpt.GPTConfig
  model: gpt.GPT
  tokenizer: object
  task: loop.Task
  train_source: object = None
  eval_source: object = None
  train_tokens: np.ndarray = None
  eval_tokens: np.ndarray = None


def model_config(cfg) -> gpt.GPTConfig:
  return model_config_lib.from_config(gpt.GPTConfig, cfg.model)


def gpt_task(model_cfg, train_data=None, eval_data=None, tokens_per_batch=0, import_params=None):
  """The loop's Task for a GPT of `model_cfg`: init, loss, FLOPs, and the milestone's
  importers ({kind: import_fn}, e.g. its hf: format)."""
  model = gpt.GPT(model_cfg)
  # Initialised through the xla attention: the parameters are the same whichever attention
  # runs, and the Mosaic GPU kernel refuses a one-token sequence.
  init_model = gpt.GPT(dataclasses.replace(model_cfg, attention_impl="xla"))
  init_params = lambda rng: init_model.init(rng, jnp.zeros((1, 1), jnp.int32))["params"]
  abstract = jax.eval_shape(init_params, jax.random.PRNGKey(0))
  return loop.Task(init_params=init_params, loss_fn=lm_loss.lm_loss_fn(model), train_data=train_data,
                   eval_data=eval_data, flops_per_token=gpt.flops_per_token(model_cfg, abstract),
                   tokens_per_batch=tokens_per_batch,
                   import_params=import_params or {})


def _sources(data_cfg):
  """(train, eval) random-access sources of a TFDS dataset whose `text_key` field is text.

  Any builder can feed the LM, e.g. sst_binary with text_key=sentence; the
  language-model corpora (builders.TEXT_DATASETS) hold their text under "text".
  """
  if data_cfg.name.partition("/")[0] not in builders.BUILDERS:
    raise ValueError(f"unknown language-model dataset {data_cfg.name!r}; choose text_file or "
                     f"one of {', '.join(builders.TEXT_DATASETS)} (or another builder of "
                     "lineage.data.builders with --config.data.text_key=FIELD)")
  config = (synthetic_text.config(data_cfg.num_docs, data_cfg.seed)
            if data_cfg.name == "synthetic_text" else None)
  load = lambda split: builders.load(data_cfg.name, split, config=config,
                                     data_dir=data_cfg.data_dir or None,
                                     manual_dir=data_cfg.manual_dir or None)
  train, evaluation = load(data_cfg.train_split), load(data_cfg.eval_split)
  fields = train[0].keys() if len(train) else ()
  if data_cfg.text_key not in fields:
    raise ValueError(f"{data_cfg.name} records have no field {data_cfg.text_key!r}; its fields "
                     f"are {', '.join(sorted(fields))}: set --config.data.text_key to one of them")
  return train, evaluation


def _texts(source, text_key, limit=None):
  for i in range(len(source) if limit is None else min(limit, len(source))):
    yield source[i][text_key].decode("utf-8", errors="replace")


def build(cfg, workdir=None, importers=None) -> LMParts:
  """Model, tokenizer, data and loop Task for a GPT config (configs/gpt1.py, configs/gpt2.py).

  `workdir` holds a trained BPE tokenizer (data.tokenizer=bpe) across resumes; importers:
  model_cfg -> {kind: import_fn}, the milestone's formats for `init_from=KIND:PATH`.
  """
  data = cfg.data
  model_cfg = model_config(cfg)
  model = gpt.GPT(model_cfg)
  if data.name == "text_file":
    text = lm_batches.read_text_file(data.path) if data.path else None
    if text is None:
      raise ValueError("data.name=text_file needs --config.data.path=FILE")
    train_source = eval_source = None
    texts = [text]
  else:
    train_source, eval_source = _sources(data)
    texts = _texts(train_source, data.text_key)
  tokenizer = tokenizers.make_tokenizer(data.tokenizer, vocab_dir=data.vocab_dir or None,
                                        workdir=workdir, train_texts=texts,
                                        vocab_size=data.bpe_vocab_size)
  if tokenizer.vocab_size > model_cfg.vocab_size:
    raise ValueError(f"the {data.tokenizer} tokenizer has {tokenizer.vocab_size} tokens but "
                     f"model.vocab_size is {model_cfg.vocab_size}; raise --config.model.vocab_size")
  if data.seq_len > model_cfg.context:
    raise ValueError(f"data.seq_len={data.seq_len} exceeds model.context={model_cfg.context}")
  seq_len, batch_size = data.seq_len, cfg.train.batch_size
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  parts = LMParts(model_cfg, model, tokenizer, None, train_source, eval_source)
  if train_source is None:
    parts.train_tokens, parts.eval_tokens = lm_batches.split_tokens(
        lm_batches.tokenize_documents([text], tokenizer), data.eval_fraction)
    train_data = lm_batches.RandomWindows(parts.train_tokens, seq_len, batch_size,
                                          cfg.train.seed, **process)
    eval_data = lambda: lm_batches.sequential_windows(parts.eval_tokens, seq_len, batch_size,
                                                      cfg.train.eval_batches, **process)
  else:
    train_data = pipeline.lm_pipeline(train_source, tokenizer, seq_len=seq_len,
                                      batch_size=batch_size, seed=cfg.train.seed,
                                      worker_count=data.worker_count, text_key=data.text_key,
                                      **process)
    eval_data = lambda: pipeline.lm_eval_batches(eval_source, tokenizer, seq_len=seq_len,
                                                 batch_size=batch_size,
                                                 max_batches=cfg.train.eval_batches,
                                                 text_key=data.text_key, **process)
  parts.task = gpt_task(model_cfg, train_data, eval_data, seq_len * batch_size,
                        importers(model_cfg) if importers else None)
  return parts


def train_unigram_entropy(parts: LMParts, text_key="text", max_records=20_000):
  """Unigram entropy (nats/token) of the training data: the best context-free model's loss."""
  if parts.train_tokens is not None:
    return lm_batches.unigram_entropy(parts.train_tokens)
  docs = list(_texts(parts.train_source, text_key, max_records))
  return lm_batches.unigram_entropy(lm_batches.tokenize_documents(docs, parts.tokenizer))
