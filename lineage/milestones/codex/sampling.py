"""n completions of each problem's prompt, through one compiled decoder for every problem.

Rows (a problem's prompt, once per sample) are cut into batches of a fixed size, the last
padded with copies of the first row, and every prompt is left-padded to the same length
(`bucket` = the model's context), so the whole sweep over problems and temperatures runs one
executable: temperature and top-p are traced values, not part of the shape. A row stops at
Codex's stop sequences and is cut there.
"""

import jax

from lineage import decode
from lineage.eval import functional
from lineage.models import gpt


def generator(model_cfg):
  return decode.Generator(*gpt.decoding(model_cfg), model_cfg.context)


def sample(model_cfg, params, tokenizer, problems, *, num_samples, temperature, top_p,
           max_new_tokens, batch_size, seed, gen=None):
  """[{"task_id", "completion"}]: num_samples completions per problem, in problem order."""
  if num_samples < 1 or batch_size < 1:
    raise ValueError(f"num_samples={num_samples} and batch_size={batch_size} must be >= 1")
  gen = gen or generator(model_cfg)
  rows = [(p["task_id"], tokenizer.encode(p["prompt"])) for p in problems
          for _ in range(num_samples)]
  sampling = decode.Sampling(temperature=temperature, top_p=top_p)
  rng = jax.random.PRNGKey(seed)
  out = []
  for start in range(0, len(rows), batch_size):
    batch = rows[start:start + batch_size]
    prompts = [ids for _, ids in batch] + [batch[0][1]] * (batch_size - len(batch))
    completions = gen.generate(params, prompts, max_new_tokens, sampling=sampling,
                               rng=jax.random.fold_in(rng, start), stop_tokens=(tokenizer.eot_id,),
                               stop_strings=functional.STOP_SEQUENCES,
                               detokenize=tokenizer.decode, bucket=model_cfg.context)
    out += [{"task_id": task_id, "completion": functional.truncate(tokenizer.decode(ids))}
            for (task_id, _), ids in zip(batch, completions)]
  return out
