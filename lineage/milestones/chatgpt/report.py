"""The chain's summary and report: each stage's metrics in one table, the dialogue accuracy
of the base, SFT and PPO models, the code-share comparison, the transcript."""

import numbers

KEYS = {  # stage -> the metrics its row shows
    "pretrain": ("eval_loss", "code_share", "probe_multi_step", "probe_retrieval"),
    "sft": ("final_train_loss", "base_dialogue_first", "base_dialogue_dependent",
            "eval_dialogue_first", "eval_dialogue_dependent"),
    "rm": ("final_train_loss", "eval_pair_accuracy", "eval_mean_reward"),
    "ppo": ("final_train_loss", "eval_dialogue_first", "eval_dialogue_dependent", "rm_shift"),
    "pretrain_no_code": ("eval_loss", "code_share", "probe_multi_step", "probe_retrieval"),
}


def summarise(results):
  """summary.json: the dialogue accuracies, the code comparison and every stage's numbers."""
  summary = {"stages": {name: {k: v for k, v in r.items() if isinstance(v, numbers.Number)}
                        for name, r in results.items()}}
  sft, ppo = results.get("sft"), results.get("ppo")
  if sft and ppo:
    for turn in ("dependent", "first"):
      summary[f"dialogue_{turn}_accuracy"] = {
          "base": sft[f"base_dialogue_{turn}"], "sft": sft[f"eval_dialogue_{turn}"],
          "ppo": ppo[f"eval_dialogue_{turn}"]}
    dep = summary["dialogue_dependent_accuracy"]
    summary["sft_beats_base_on_dependent_turns"] = dep["sft"] > dep["base"]
    summary["ppo_keeps_sft_on_dependent_turns"] = dep["ppo"] >= dep["sft"]
  if "pretrain" in results and "pretrain_no_code" in results:
    summary["code_comparison"] = {
        label: {k: results[name][k] for k in KEYS["pretrain"]}
        for label, name in (("with_code", "pretrain"), ("without_code", "pretrain_no_code"))}
  if "chat" in results:
    summary["side_by_side"] = results["chat"]["side_by_side"]
  return summary


def _cell(value):
  return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(summary, results):
  lines = ["# The GPT-3.5 chain in small", "", "| stage | steps | metrics |", "|---|---|---|"]
  for name, keys in KEYS.items():
    if name in results:
      r = results[name]
      metrics = ", ".join(f"{k} {_cell(r[k])}" for k in keys if k in r)
      lines.append(f"| {name} | {r.get('steps', '')} | {metrics} |")
  for turn in ("dependent", "first"):
    acc = summary.get(f"dialogue_{turn}_accuracy")
    if acc:
      lines += ["", f"Shopping-list dialogues, accuracy on {turn} turns: " +
                ", ".join(f"{k} {v:.1%}" for k, v in acc.items())]
  code = summary.get("code_comparison")
  if code:
    lines += ["", "Pre-training with and without code (same token budget; zero-shot digit "
              "accuracy, chance 10%; each eval loss is on its own mixture):", "",
              "| model | code share | multi-step | retrieval | eval loss |",
              "|---|---|---|---|---|"]
    for label, r in code.items():
      lines.append(f"| {label} | {r['code_share']:.2f} | {r['probe_multi_step']:.1%} | "
                   f"{r['probe_retrieval']:.1%} | {r['eval_loss']:.3f} |")
  answers = summary.get("side_by_side")
  if answers:
    names = list(next(iter(answers.values())))
    lines += ["", "The same prompt through each model:", "",
              "| prompt | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for prompt, by_model in answers.items():
      cells = [repr(by_model[n]).replace("|", "\\|") for n in names]
      lines.append(f"| {prompt} | " + " | ".join(cells) + " |")
  if "chat" in results:
    lines += ["", "A scripted chat with the PPO model:", "", "```",
              results["chat"]["transcript"].rstrip(), "```"]
  return "\n".join(lines) + "\n"
