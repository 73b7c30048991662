"""A chat model: a GPT whose vocabulary is the tokenizer's plus the chat template's four
special ids, trained on dialogues with the loss on assistant turns only, and asked for
replies in multi-turn context.

Multi-turn SFT encodes each conversation with `ChatTemplate` (its loss mask covers every
assistant turn and its <|end|>, never the user's or the system's words) and packs the
conversations with lineage.rlhf.sft, so a row holds several conversations that never attend
to each other. Replies are generated with <|end|> as the stop token after the conversation
fitted to the context (oldest exchanges dropped, the system prompt kept).
"""

import dataclasses

from lineage import decode
from lineage.data import chat, tokenizers
from lineage.data import synthetic_dialogue as sd
from lineage.models import gpt
from lineage.rlhf import sft


@dataclasses.dataclass
class ChatModel:
  """The template and compiled sampler of one model shape; parameters are passed in."""
  model_cfg: gpt.GPTConfig
  template: chat.ChatTemplate
  generator: decode.Generator

  @property
  def tokenizer(self):
    return self.template.tokenizer

  def prompt(self, turns, max_new_tokens):
    """(ids ending with <|assistant|>, exchanges dropped) for a conversation ending with a
    user turn, fitted to leave room for `max_new_tokens`."""
    kept, dropped = self.template.fit(turns, self.model_cfg.context - max_new_tokens,
                                      generation_prompt=True)
    return self.template.encode(kept, generation_prompt=True)[0], dropped

  def text(self, ids):
    """A reply's text: special ids (which a reply should not contain) left out."""
    return self.tokenizer.decode([i for i in ids if i < self.tokenizer.vocab_size])


def chat_model(model_cfg: gpt.GPTConfig, tokenizer=None) -> ChatModel:
  """A ChatModel for a GPT config; its vocabulary must hold the template's special ids."""
  template = chat.ChatTemplate(tokenizer or tokenizers.ByteTokenizer())
  if model_cfg.vocab_size < template.vocab_size:
    raise ValueError(f"model.vocab_size={model_cfg.vocab_size} has no room for the chat "
                     f"template's special tokens: set it to at least {template.vocab_size} "
                     "(the tokenizer's vocabulary plus four), also for the pre-trained model "
                     "it starts from")
  return ChatModel(model_cfg, template,
                   decode.Generator(*gpt.decoding(model_cfg), model_cfg.context))


def sft_examples(template, dialogues):
  """(tokens, loss mask) of each conversation: the mask on the assistant turns only."""
  return [template.encode(turns) for turns in dialogues]


def sft_batches(template, dialogues, seq_len, batch_size, seed):
  """Packed, resumable batches of the LM loss (inputs, targets, weights, positions,
  segment_ids) for multi-turn SFT."""
  packed = sft.pack(sft_examples(template, dialogues), seq_len)
  return sft.EpochBatches(packed.arrays, batch_size, seed)


def replies(chat_model_: ChatModel, params, contexts, max_new_tokens, batch_size,
            sampling=decode.Sampling(temperature=0.0), rng=None):
  """One reply per conversation, in batches of a fixed size (the last padded with the first
  conversation) and prompts padded to the context less the reply, so that every call reuses
  one compiled sampler."""
  prompts = [chat_model_.prompt(turns, max_new_tokens)[0] for turns in contexts]
  out = []
  for start in range(0, len(prompts), batch_size):
    chunk = prompts[start:start + batch_size]
    padded = chunk + [prompts[0]] * (batch_size - len(chunk))
    ids = chat_model_.generator.generate(params, padded, max_new_tokens, sampling=sampling,
                                         rng=rng, stop_tokens=(chat_model_.template.end_id,),
                                         bucket=chat_model_.model_cfg.context)
    out += [chat_model_.text(r) for r in ids[:len(chunk)]]
  return out


def dialogue_accuracy(chat_model_, params, dialogues, max_new_tokens, batch_size):
  """Greedy replies to every turn of the dialogues, scored by the task's checker."""
  return sd.accuracy(lambda contexts: replies(chat_model_, params, contexts, max_new_tokens,
                                              batch_size), dialogues)


def evaluator(chat_model_, dialogues, max_new_tokens, batch_size):
  """The loop's evaluate hook: accuracy on first and history-dependent turns."""
  def evaluate(params, step):
    del step
    return dialogue_accuracy(chat_model_, params, dialogues, max_new_tokens,
                             batch_size).as_dict("dialogue_")
  return evaluate


def check_fits(template, dialogues, seq_len):
  """The longest conversation must fit a packed row."""
  longest = max(len(template.encode(d)[0]) for d in dialogues)
  if longest - 1 > seq_len:
    raise ValueError(f"a dialogue takes {longest} tokens, more than seq_len + 1 = "
                     f"{seq_len + 1}; lower the most exchanges per dialogue or raise the "
                     "sequence length")
  return longest

