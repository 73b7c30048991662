"""report.md for zero-shot runs: Table 3 of the GPT-2 paper, one row per evaluated model.

Rows accumulate in zero_shot_rows.json beside the report, so evaluating another model
into the same directory adds its row instead of replacing the table.
"""

import json
import os

# (header, summary key, metric, shown as a percentage)
COLUMNS = (
    ("LAMBADA PPL", "lambada", "ppl", False),
    ("LAMBADA ACC", "lambada", "acc_stopword_filter", True),
    ("CBT-CN ACC", "cbt_cn", "acc", True),
    ("CBT-NE ACC", "cbt_ne", "acc", True),
    ("WikiText2 PPL", "wikitext2", "word_ppl", False),
    ("PTB PPL", "ptb", "word_ppl", False),
    ("enwik8 BPB", "enwik8", "bpb", False),
    ("text8 BPC", "text8", "bpc", False),
    ("WikiText103 PPL", "wikitext103", "word_ppl", False),
    ("1BW PPL", "1bw", "word_ppl", False),
)
# Extra columns after the paper's: the LAMBADA accuracy without the stop-word filter,
# perplexities per BPE token, and the embedded corpus (word perplexity of its test split).
EXTRA_COLUMNS = (
    ("LAMBADA ACC (no filter)", "lambada", "acc", True),
    ("WikiText2 tok PPL", "wikitext2", "token_ppl", False),
    ("PTB tok PPL", "ptb", "token_ppl", False),
    ("synthetic_text PPL", "synthetic_text", "word_ppl", False),
)
# Radford et al. 2019, Table 3, as printed.
PAPER_ROWS = {
    "GPT-2 117M (paper)": ("35.13", "45.99", "87.65", "83.4", "29.41", "65.85", "1.16", "1.17",
                           "37.50", "75.20"),
    "GPT-2 345M (paper)": ("15.60", "55.48", "92.35", "87.1", "22.76", "47.33", "1.01", "1.06",
                           "26.37", "55.72"),
    "GPT-2 762M (paper)": ("10.87", "60.12", "93.45", "88.0", "19.93", "40.31", "0.97", "1.02",
                           "22.05", "44.575"),
    "GPT-2 1542M (paper)": ("8.63", "63.24", "93.30", "89.05", "18.34", "35.76", "0.93", "0.98",
                            "17.48", "42.16"),
}
ROWS_FILE = "zero_shot_rows.json"
CONVENTIONS = """\
Conventions. LAMBADA: the target is the passage's last space-separated word, tokenized as
lm-evaluation-harness does (the whole passage, split where the context's tokens end). "no
filter" (lm-evaluation-harness's acc) counts a passage when every target token is the argmax;
PPL = exp(mean over passages of the target's summed negative log-likelihood). "LAMBADA ACC",
the paper's number, filters stop words at the level of words: the prediction is the greedy
continuation up to the next word boundary; a predicted word that is itself a stop word is
rejected and the greedy word from the next-ranked first token taken instead; the passage
counts when the prediction spells the target. CBT: the candidate whose completed query is
most likely given the 20 context sentences (one per line, then the query on its own line);
`` and '' read as ". WikiText2, PTB, WikiText103, 1BW: detokenized lines joined with newlines,
sliding windows of `context` tokens advancing by `stride` (each token scored once, with at
least context - stride tokens of left context once past the first window); PPL is per word
of the ORIGINAL tokenization, counting one `<eos>` per line, "tok PPL" per GPT-2 BPE token.
enwik8 / text8: total nats / ln 2 / bytes (characters) of the test split (its last 5%), cut on
character boundaries and checked to round-trip through the tokenizer. The LM head and
log-softmax run in float32. Accuracies in %.
"""


def _scored(result):
  """What a dataset's numbers were computed over, as counted while scoring it."""
  if "num_words" in result:
    return (f"{result['num_lines']:,} lines, {result['num_words']:,} words, "
            f"{result['num_tokens']:,} tokens, {result['num_documents']:,} document(s)")
  if "num_units" in result:
    dropped = result.get("dropped_first_bytes", 0) + result.get("dropped_last_bytes", 0)
    cut = f" ({dropped} bytes of a cut character left out)" if dropped else ""
    return f"{result['num_units']:,} units, {result['num_tokens']:,} tokens{cut}"
  extra = ""
  if "num_stopword_targets" in result:
    extra = (f" ({result['num_stopword_targets']} targets are stop words under "
             f"{result['stop_words']})")
  return f"{result['num_examples']:,} examples{extra}"


def _setting_words(settings):
  # Rows written before these settings existed were scored with their defaults.
  prefix = ("every text after one `<|endoftext|>`" if settings.get("eot_prefix", True)
            else "no `<|endoftext|>` prefix")
  documents = ("context restarts at each WikiText article" if settings.get("documents") == "article"
               else "context crosses article boundaries (one stream per split)")
  return (f"{prefix}; window {settings['context']}, stride {settings['stride']}; {documents}; "
          f"detokenize={settings['detokenize']}, max_examples={settings['max_examples']}, "
          f"max_bytes={settings['max_bytes']}")


def _cell(result, metric, percent):
  if result is None:
    return "not run"
  if "needs_data" in result:
    return "needs data"
  value = result[metric]
  return f"{100 * value:.2f}" if percent else f"{value:.2f}"


def render(rows):
  """The markdown report for {model name: {"summary": ..., "settings": ...}}."""
  headers = [c[0] for c in COLUMNS + EXTRA_COLUMNS]
  lines = ["# Zero-shot results (GPT-2 paper, Table 3)", "",
           "| Model | " + " | ".join(headers) + " |",
           "|---|" + "---:|" * len(headers)]
  needs, settings = {}, []
  for model, row in rows.items():
    summary = row["summary"]
    cells = [_cell(summary.get(key), metric, percent)
             for _, key, metric, percent in COLUMNS + EXTRA_COLUMNS]
    lines.append(f"| {model} | " + " | ".join(cells) + " |")
    needs.update({k: v["needs_data"] for k, v in summary.items() if "needs_data" in v})
    counts = "; ".join(f"{name} {_scored(result)}" for name, result in summary.items()
                       if "needs_data" not in result)
    settings.append(f"- {model}: {_setting_words(row['settings'])}. Scored: {counts}")
  for model, values in PAPER_ROWS.items():
    extra = ["" for _ in EXTRA_COLUMNS]
    lines.append(f"| {model} | " + " | ".join(list(values) + extra) + " |")
  lines += ["", CONVENTIONS, ("Settings and what was scored (max_examples / max_bytes = 0: the "
                              "whole test split; otherwise only its first examples, lines or "
                              "bytes, so not comparable with the paper):"), *settings]
  if needs:
    lines += ["", "Datasets that need data (then rerun the evaluation):"]
    lines += [f"- {name}: `{command}`" for name, command in sorted(needs.items())]
  return "\n".join(lines) + "\n"


def write(out_dir, model_name, summary, settings):
  """summary.json for this model, and report.md with every model evaluated into out_dir."""
  os.makedirs(out_dir, exist_ok=True)
  rows_path = os.path.join(out_dir, ROWS_FILE)
  rows = {}
  if os.path.exists(rows_path):
    with open(rows_path) as f:
      rows = json.load(f)
  rows[model_name] = {"summary": summary, "settings": settings}
  for name, content in ((ROWS_FILE, json.dumps(rows, indent=2)),
                        ("summary.json", json.dumps(summary, indent=2)),
                        ("report.md", render(rows))):
    with open(os.path.join(out_dir, name), "w") as f:
      f.write(content)
