"""InstructGPT's data as token ids: demonstrations for SFT, ranked comparisons for the reward
model and DPO, prompts for PPO, and (on the synthetic task) the labeller that judges any
answer.

data.name:
  synthetic      lineage.data.synthetic_preferences.Arithmetic: every stage, and the truth
  hh_rlhf        Anthropic's pairs (a subset's test split, as in ../shared/data): the shared
                 dialogue up to the last "Assistant:" is the prompt, the two endings the
                 responses; the first train_fraction trains, the rest is held out; chosen
                 endings are the demonstrations
  self_instruct  the 175 seed tasks as demonstrations (SFT only): instruction and input,
                 then the output
Real prompts longer than data.prompt_len keep their end (what the model answers); responses
longer than response_len - 1 keep their start. Both are counted and reported.
"""

import dataclasses

from lineage.data import builders, tokenizers
from lineage.data.synthetic_preferences import Arithmetic

ASSISTANT = "\n\nAssistant:"


@dataclasses.dataclass
class Data:
  """Token-id data of one configuration. comparisons: (prompt, [responses], [preferences]);
  demonstrations: (prompt, response); judge(prompt ids, response ids) -> float or None."""
  tokenizer: object
  demonstrations: list
  comparisons: list = None
  eval_comparisons: list = None
  prompts: list = None
  judge: object = None
  truncated: dict = dataclasses.field(default_factory=dict)


def synthetic_task(cfg):
  d = cfg.data
  return Arithmetic(max_operand=d.max_operand, p_verbose=d.p_verbose, p_wrong=d.p_wrong)


class _Clip:
  """Truncation to the layout, counting what it cut."""

  def __init__(self, cfg):
    self.prompt_len, self.response_len = cfg.data.prompt_len, cfg.data.response_len - 1
    self.counts = {"prompts": 0, "responses": 0}

  def prompt(self, ids):
    if len(ids) > self.prompt_len:
      self.counts["prompts"] += 1
      return ids[-self.prompt_len:]
    return ids

  def response(self, ids):
    if len(ids) > self.response_len:
      self.counts["responses"] += 1
      return ids[:self.response_len]
    return ids


def load(cfg):
  """The Data of `cfg.data.name`."""
  d = cfg.data
  tokenizer = tokenizers.make_tokenizer(d.tokenizer, vocab_dir=d.vocab_dir or None)
  if d.name == "synthetic":
    return _synthetic(cfg, tokenizer)
  if d.name == "hh_rlhf":
    return _hh_rlhf(cfg, tokenizer)
  if d.name == "self_instruct":
    return _self_instruct(cfg, tokenizer)
  raise ValueError(f"unknown data.name {d.name!r}; choose synthetic, hh_rlhf or self_instruct")


def _synthetic(cfg, tokenizer):
  d = cfg.data
  task = synthetic_task(cfg)
  enc = tokenizer.encode
  check = _Checked(cfg)

  def comparisons(n, seed):
    return [(check.prompt(enc(p)), [check.response(enc(r)) for r in rs], prefs)
            for p, rs, prefs in task.comparisons(n, seed)]

  def judge(prompt_ids, response_ids):
    return task.score(tokenizer.decode(prompt_ids), tokenizer.decode(response_ids))

  return Data(tokenizer,
              demonstrations=[(check.prompt(enc(p)), check.response(enc(r)))
                              for p, r in task.demonstrations(d.num_demonstrations, d.seed)],
              comparisons=comparisons(d.num_comparisons, d.seed),
              eval_comparisons=comparisons(d.num_eval_comparisons, d.seed + 1),
              prompts=[check.prompt(enc(p)) for p in task.prompts()], judge=judge)


class _Checked:
  """The synthetic task's ids must fit the layout as they are: a clear error if not."""

  def __init__(self, cfg):
    self.prompt_len, self.response_len = cfg.data.prompt_len, cfg.data.response_len - 1

  def prompt(self, ids):
    if len(ids) > self.prompt_len:
      raise ValueError(f"a prompt of {len(ids)} tokens does not fit data.prompt_len="
                       f"{self.prompt_len}; raise it (prompt_len + response_len must fit "
                       "model.context)")
    return ids

  def response(self, ids):
    if len(ids) > self.response_len:
      raise ValueError(f"a response of {len(ids)} tokens does not fit data.response_len="
                       f"{self.response_len + 1} (which includes the end-of-text token); "
                       "raise it")
    return ids


def split_dialogue(chosen, rejected):
  """(prompt, chosen ending, rejected ending) of an hh-rlhf pair: the prompt runs to the
  last "Assistant:" the two transcripts share."""
  shared = 0
  while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
    shared += 1
  cut = chosen.rfind(ASSISTANT, 0, shared + 1)
  if cut < 0:
    raise ValueError("an hh-rlhf pair whose transcripts share no 'Assistant:' turn")
  cut += len(ASSISTANT)
  return chosen[:cut], chosen[cut:], rejected[cut:]


def _records(cfg, name, split):
  d = cfg.data
  source = builders.load(name, split, data_dir=d.data_dir or None,
                         manual_dir=d.manual_dir or None)
  n = len(source) if not d.limit else min(d.limit, len(source))
  return [source[i] for i in range(n)]


def _hh_rlhf(cfg, tokenizer):
  d = cfg.data
  clip = _Clip(cfg)
  comparisons = []
  for record in _records(cfg, f"hh_rlhf/{d.subset}", "test"):
    prompt, chosen, rejected = split_dialogue(record["chosen"].decode("utf-8", "replace"),
                                              record["rejected"].decode("utf-8", "replace"))
    comparisons.append((clip.prompt(tokenizer.encode(prompt)),
                        [clip.response(tokenizer.encode(chosen)),
                         clip.response(tokenizer.encode(rejected))], [1.0, 0.0]))
  split = int(len(comparisons) * d.train_fraction)
  train = comparisons[:split]
  return Data(tokenizer, demonstrations=[(p, rs[0]) for p, rs, _ in train],
              comparisons=train, eval_comparisons=comparisons[split:],
              prompts=[p for p, _, _ in train], truncated=clip.counts)


def _self_instruct(cfg, tokenizer):
  clip = _Clip(cfg)
  demonstrations = []
  for record in _records(cfg, "self_instruct", "seed_tasks"):
    instruction = record["instruction"].decode("utf-8", "replace")
    for given, output in zip(record["instances"]["input"], record["instances"]["output"]):
      given = given.decode("utf-8", "replace")
      prompt = instruction + ("\n" + given if given else "") + "\n"
      demonstrations.append((clip.prompt(tokenizer.encode(prompt)),
                             clip.response(tokenizer.encode(output.decode("utf-8",
                                                                          "replace")))))
  return Data(tokenizer, demonstrations=demonstrations,
              prompts=[p for p, _ in demonstrations], truncated=clip.counts)
