"""GPT-1's zero-shot heuristics (Radford et al. 2018, section 5, Figure 2 right): what the
generative model alone solves, measured as pre-training goes on, with no fine-tuning.

- sst2: the sentence, then " very", and whether " positive" or " negative" is likelier next;
- story_cloze: the ending with the higher average log-probability per token given the story;
- synthetic_choice (the embedded corpus's stand-in for Story Cloze): the same rule on
  `tasks.synthetic_choice`'s endings.
Each is run by the pre-training Task's evaluation hook and logged as eval_zero_shot_<task>.
"""

import numpy as np

from lineage.eval import lm_metrics, scoring
from lineage.milestones.gpt1 import tasks

TASKS = ("sst2", "story_cloze", "synthetic_choice")


def _request(tokenizer, context, continuation):
  context_ids = [tokenizer.eot_id, *tokenizer.encode(context)]
  target = tokenizer.encode(continuation)
  if not target:
    raise ValueError(f"the continuation {continuation!r} encodes to no tokens")
  return lm_metrics.Request(np.asarray(context_ids + target, np.int32), len(target))


def requests_and_answers(name, tokenizer, examples):
  """(requests, how many per example, per-token averaging or not, the right choice per
  example) for heuristic `name` over (texts, label) examples of the matching task."""
  if name == "sst2":
    requests = [_request(tokenizer, f"{texts[0]} very", word)
                for texts, _ in examples for word in (" negative", " positive")]
    return requests, 2, False, np.array([label for _, label in examples])
  if name in ("story_cloze", "synthetic_choice"):
    requests = [_request(tokenizer, texts[0], " " + ending)
                for texts, _ in examples for ending in texts[1:]]
    return requests, len(examples[0][0]) - 1, True, np.array([label for _, label in examples])
  raise ValueError(f"unknown zero-shot heuristic {name!r}; choose from {', '.join(TASKS)}")


def evaluator(model_cfg, tokenizer, names, examples_of, batch_size, max_len):
  """The pre-training Task's evaluate hook: {"zero_shot_<name>": accuracy} per heuristic.

  examples_of(name) -> (texts, label) examples; they are tokenized once, here."""
  prepared = {name: requests_and_answers(name, tokenizer, examples_of(name)) for name in names}
  scorers = {}

  def evaluate(params, step):
    del step
    if "scorer" not in scorers:  # Built on first use; compiled once, fed each step's params.
      scorers["scorer"] = scoring.Scorer(model_cfg, params, batch_size=batch_size,
                                         max_len=max_len, valid_vocab=tokenizer.vocab_size)
    scorer = scorers["scorer"].with_params(params)
    results = {}
    for name, (requests, choices, per_token, answers) in prepared.items():
      logprob = scorer.score(requests).logprob
      if per_token:
        logprob = logprob / np.array([r.num_targets for r in requests])
      picked = logprob.reshape(-1, choices).argmax(-1)
      results[f"zero_shot_{name}"] = float((picked == answers).mean())
    return results
  return evaluate


def examples_for(name, cfg):
  """The held-out examples a heuristic is measured on (capped by zero_shot.max_examples)."""
  limit = cfg.zero_shot.max_examples
  return tasks.examples(name, "validation", num_synthetic=limit, seed=cfg.finetune.seed,
                        data_dir=cfg.data.data_dir or None,
                        manual_root=cfg.data.manual_dir or None, limit=limit)
