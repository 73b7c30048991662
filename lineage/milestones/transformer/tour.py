"""The Transformer's tour section: the tiny encoder-decoder trained on the synthetic language
pair, scored by BLEU of beam-searched translations, alone and averaged over checkpoints."""

import os

from lineage import milestones
from lineage.milestones.transformer import modes, task
from lineage.train import loop


def run(cfg, workdir):
  """Train the tiny Transformer on the synthetic pair; BLEU of its last and averaged weights."""
  run_dir = os.path.join(workdir, "transformer")
  _, summary = loop.train(cfg, run_dir, task.build_task(cfg, run_dir))
  last = modes.run_eval(cfg, run_dir)
  averaged = modes.run_average(cfg, run_dir)
  m, t, d = cfg.model, cfg.train, cfg.decode
  examples = "\n".join(f"{e['source']}\n  -> {e['translation']}\n     ({e['reference']})"
                       for e in last["examples"][:3])
  return f"""## The Transformer (2017): attention alone translates

An encoder-decoder ({m.num_layers} + {m.num_layers} post-LN layers, d_model {m.embed_dim},
{m.num_heads} heads, sinusoidal positions, one embedding shared by both languages and the
output projection) trained for {t.steps} steps on the synthetic language pair, whose target
language has its own words, puts adjectives after nouns and verbs last, and marks plurals:
batches of about {cfg.data.max_tokens} tokens a side by length bucket, Adam (0.9, 0.98,
1e-9) on the noam schedule (warmup {t.warmup_steps}), label smoothing {t.label_smoothing:g},
dropout {m.dropout:g}.
Translations are beam-searched (beam {d.beam_size}, length penalty alpha {d.alpha:g}, up to
the source length + {d.extra_length} tokens) and scored by sacrebleu.

| | value |
|---|---|
| validation loss (label-smoothed) / NLL per token | {summary['eval_loss']:.3f} / \
{summary['eval_nll']:.3f} |
| validation BLEU ({cfg.eval.bleu_pairs} pairs) | {summary['eval_bleu']:.1f} |
| test BLEU, last checkpoint ({last['pairs']} pairs) | {last['bleu']:.1f} |
| test BLEU, mean of checkpoints {', '.join(map(str, averaged['steps']))} | {averaged['bleu']:.1f} |

Test translations (reference in parentheses):
```
{examples}
```
"""


SECTION = milestones.TourSection("transformer", "configs/transformer.py:tiny", run)
