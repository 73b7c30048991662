"""GPT-3's few-shot harness: prompts (deterministic, never the example under test, fitted to the
context), the scoring rules against a brute-force sum of token log-probabilities over full
forward passes, shared-prefix KV reuse against whole-prompt scoring, free-form answers against
a plain greedy loop, and the bad inputs."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lineage.data import tokenizers
from lineage.eval import few_shot, few_shot_tasks
from lineage.eval.few_shot import Example, Task
from lineage.models import gpt

TOK = tokenizers.ByteTokenizer()


@pytest.fixture(scope="module")
def model():
  """A tiny random GPT over bytes whose odd layer attends within a band of 16 (GPT-3's
  alternating layers), so prompts longer than the band exercise it."""
  cfg = gpt.GPTConfig(vocab_size=257, context=256, num_layers=2, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0, local_window=16)
  init = jax.jit(lambda rng: gpt.GPT(cfg).init(rng, jnp.zeros((1, 8), jnp.int32))["params"])
  params = init(jax.random.PRNGKey(0))
  return few_shot.Model(cfg, params, TOK, batch_size=4)


@functools.partial(jax.jit, static_argnames="cfg")
def _full_forward(params, tokens, cfg):
  return jax.nn.log_softmax(gpt.GPT(cfg).apply({"params": params}, tokens[None])[0])


def _full_logp(model, tokens):
  """log-probabilities [len(tokens), vocab] of the token after each of `tokens`: one full
  forward pass (padded at the end to the context, which no earlier position sees)."""
  padded = np.zeros(model.cfg.context, np.int32)
  padded[:len(tokens)] = tokens
  return np.asarray(_full_forward(model.params, padded, model.cfg))[:len(tokens)]


def _brute_logprob(model, tokens, num_targets):
  """(log P(last `num_targets` tokens | the rest), all of them the argmax): a full forward
  pass, then a plain loop over the targets."""
  logp = _full_logp(model, tokens[:-1])
  total, greedy = 0.0, True
  for position in range(len(tokens) - num_targets, len(tokens)):
    total += float(logp[position - 1, tokens[position]])
    greedy &= int(logp[position - 1].argmax()) == tokens[position]
  return total, greedy


def _task(n_demos=12, n_tests=6, **kw):
  demos = tuple(Example(f"train:{i}", f"demo {i} ok?\nAnswer:", ("yes", "no"), i % 2)
                for i in range(n_demos))
  tests = tuple(Example(f"test:{i}", f"test {i} ok?\nAnswer:", ("yes", "no"), i % 2)
                for i in range(n_tests))
  return Task("toy", "choice", demos, tests, "train", "test", **kw)


def test_prompts_are_deterministic_for_a_seed_and_never_show_the_example():
  task = few_shot_tasks.load("synthetic_compare", limit=40)
  # The tested split as the pool (LAMBADA's case): the example itself is in it.
  same_pool = dataclasses.replace(task, demonstrations=task.tests)
  for example in same_pool.tests:
    first = few_shot.demonstrations(same_pool, example, 8, seed=3)
    assert [d.uid for d in first] == [d.uid for d in few_shot.demonstrations(
        same_pool, example, 8, seed=3)]
    assert example.uid not in {d.uid for d in first}
    assert len({d.uid for d in first}) == 8
    # K = 1's demonstration is the first of K = 8's.
    assert few_shot.demonstrations(same_pool, example, 1, seed=3)[0] == first[0]
  draws = {tuple(d.uid for d in few_shot.demonstrations(task, task.tests[0], 4, seed=s))
           for s in range(5)}
  assert len(draws) > 1  # The seed matters.


def test_a_copy_of_the_example_under_test_is_never_a_demonstration():
  task = _task()
  example = task.tests[0]
  copy = Example("train:copy", "  TEST 0 ok?\nAnswer: ", ("yes", "no"), 0)  # same text
  pool = task.demonstrations + (copy,)
  task = dataclasses.replace(task, demonstrations=pool)
  for seed in range(30):
    shown = few_shot.demonstrations(task, example, len(pool) - 1, seed=seed, on_too_few="clip")
    assert "train:copy" not in {d.uid for d in shown}
    assert len(shown) == len(pool) - 1


def test_prompt_text_uses_the_separators_and_description():
  task = _task(target_delimiter=" ", fewshot_delimiter="\n\n", description="Say yes or no.")
  shown = list(task.demonstrations[:2])
  text = few_shot.prompt_text(task, shown, task.tests[0])
  assert text == ("Say yes or no.\n\ndemo 0 ok?\nAnswer: yes\n\ndemo 1 ok?\nAnswer: no\n\n"
                  "test 0 ok?\nAnswer:")
  assert few_shot.prompt_text(task, [], task.tests[0], description="") == "test 0 ok?\nAnswer:"
  lambada = few_shot_tasks.lambada_example("test:0", "Alice was friends with Bob. Alice went "
                                           "to visit her friend Bob")
  assert lambada.context.endswith("her friend ___. ->") and lambada.choices == ("Bob",)
  assert few_shot.prompt_text(dataclasses.replace(task, description=""), [lambada], lambada
                              ).startswith("Alice was friends with Bob. Alice went to visit her "
                                           "friend ___. -> Bob\n\n")


def test_too_few_demonstrations_is_an_error_or_clipped():
  task = _task(n_demos=3)
  with pytest.raises(ValueError, match=r"K=5 .*only 3 .*on_too_few='clip'"):
    few_shot.demonstrations(task, task.tests[0], 5, seed=0)
  assert len(few_shot.demonstrations(task, task.tests[0], 5, seed=0, on_too_few="clip")) == 3
  with pytest.raises(ValueError, match="on_too_few"):
    few_shot.demonstrations(task, task.tests[0], 1, seed=0, on_too_few="maybe")
  with pytest.raises(ValueError, match="K=-1"):
    few_shot.demonstrations(task, task.tests[0], -1, seed=0)


def test_a_long_prompt_drops_demonstrations_from_the_front():
  task = _task()
  shown = list(task.demonstrations[:6])
  whole = few_shot.build_prompt(task, task.tests[0], shown, TOK, 1000, 4)
  assert whole.dropped == 0 and whole.truncated == 0
  assert TOK.decode(whole.tokens[1:]) == few_shot.prompt_text(task, shown, task.tests[0])
  max_len = len(whole.tokens) - 10 + 4  # Room for all but about one demonstration.
  fitted = few_shot.build_prompt(task, task.tests[0], shown, TOK, max_len, 4)
  assert fitted.dropped == 1 and fitted.demonstrations == tuple(d.uid for d in shown[1:])
  assert len(fitted.tokens) + 4 <= max_len
  assert TOK.decode(fitted.tokens[1:]) == few_shot.prompt_text(task, shown[1:], task.tests[0])
  for max_len in range(30, len(whole.tokens) + 5, 7):  # The fewest drops that fit.
    prompt = few_shot.build_prompt(task, task.tests[0], shown, TOK, max_len, 4)
    assert len(prompt.tokens) + 4 <= max_len
    if 0 < prompt.dropped < len(shown):
      longer = few_shot.build_prompt(task, task.tests[0], shown[prompt.dropped - 1:], TOK,
                                     10_000, 4)
      assert len(longer.tokens) + 4 > max_len
  # The example alone longer than the context: all demonstrations go, then its left end.
  cut = few_shot.build_prompt(task, task.tests[0], shown, TOK, 12, 4)
  assert cut.dropped == 6 and cut.truncated > 0 and len(cut.tokens) == 8
  assert TOK.decode(cut.tokens).endswith("\nAnswer:")
  with pytest.raises(ValueError, match="no room for a prompt"):
    few_shot.build_prompt(task, task.tests[0], shown, TOK, 4, 4)


@pytest.mark.slow
def test_dropped_demonstrations_are_counted_in_the_results(model):
  task = _task()
  short = dataclasses.replace(model, max_len=64)  # K = 4 needs about 90 tokens
  result = few_shot.evaluate(short, task, shots=(4,), rules=("sum",), max_examples=4)
  row = result["by_k"][4]
  assert row["dropped_demonstrations"] >= 4 and row["examples_with_dropped"] == 4
  assert row["mean_prompt_tokens"] <= 64


@pytest.mark.slow
def test_each_rule_equals_brute_force_log_probabilities(model):
  """Every choice's score from the cached prefix, and from whole prompts, equals the summed
  token log-probabilities of full forward passes; each rule's accuracy follows from them."""
  task = few_shot_tasks.load("synthetic_compare", limit=12)
  result = few_shot.evaluate(model, task, shots=(2,), seed=1, max_examples=6)
  answer = [TOK.eot_id] + TOK.encode(task.answer_context)
  correct = {rule: [] for rule in few_shot.RULES}
  prefixes, completions, brute = [], [], []
  for example in task.tests[:6]:
    shown = few_shot.demonstrations(task, example, 2, seed=1)
    prompt = [TOK.eot_id] + TOK.encode(few_shot.prompt_text(task, shown, example))
    comps = [TOK.encode(" " + c) for c in example.choices]
    lp = np.array([_brute_logprob(model, prompt + c, len(c))[0] for c in comps])
    uncond = np.array([_brute_logprob(model, answer + c, len(c))[0] for c in comps])
    prefixes.append(tuple(prompt))
    completions.append([tuple(c) for c in comps])
    brute.append(lp)
    scores = {"sum": lp, "per_token": lp / [len(c) for c in comps],
              "per_char": lp / [len(c) for c in example.choices],
              "per_byte": lp / [len(c.encode()) for c in example.choices],
              "unconditional": lp - uncond}
    for rule, s in scores.items():
      correct[rule].append(int(np.argmax(s)) == example.label)
  for reuse in (True, False):
    logprob, _ = few_shot.score_completions(model, prefixes, completions, reuse_prefix=reuse)
    np.testing.assert_allclose(np.stack(logprob), np.stack(brute), rtol=0, atol=2e-5)
  for rule in few_shot.RULES:
    assert result["by_k"][2][f"acc_{rule}"] == pytest.approx(np.mean(correct[rule])), rule
  # The rules disagree on some example, else the test could not tell them apart.
  assert len({tuple(v) for v in correct.values()}) > 1


def test_shared_prefix_reuse_scores_like_whole_prompts(model):
  rng = np.random.default_rng(0)
  # One batch of one bucket (prefixes up to 32 tokens, completions up to 4): one compilation.
  # The prefixes are longer than the model's band of 16.
  prefixes = [tuple(rng.integers(0, 256, n)) for n in (5, 30, 17, 21)]
  completions = [[tuple(rng.integers(0, 256, m)) for m in lengths]
                 for lengths in ((1, 3), (2, 2, 4), (4,), (3, 1))]
  cached, cached_greedy = few_shot.score_completions(model, prefixes, completions, True)
  whole, whole_greedy = few_shot.score_completions(model, prefixes, completions, False)
  for c, w, cg, wg in zip(cached, whole, cached_greedy, whole_greedy):
    np.testing.assert_allclose(c, w, rtol=0, atol=2e-5)
    assert cg.tolist() == wg.tolist()
  with pytest.raises(ValueError, match="empty completion"):
    few_shot.score_completions(model, prefixes[:1], [[()]])


@pytest.mark.slow
def test_prefix_scoring_compiles_once_per_bucket(model):
  task = _task(n_demos=40, n_tests=12)
  few_shot.evaluate(model, task, shots=(1,), rules=("sum",))
  before = few_shot._choices_from_prefix._cache_size()  # pylint: disable=protected-access
  # Prompts of other lengths within the same buckets (lengths up to 64, completions up to 4).
  other = _task(n_demos=40, n_tests=12, description="Hi.")
  few_shot.evaluate(model, other, shots=(1,), rules=("sum",), seed=5)
  assert few_shot._choices_from_prefix._cache_size() == before  # pylint: disable=protected-access


@pytest.mark.slow
def test_cloze_accuracy_is_whether_greedy_decoding_spells_the_word(model):
  task = few_shot_tasks.load("synthetic_cloze", limit=8)
  result = few_shot.evaluate(model, task, shots=(0, 1), max_examples=8)
  assert result["primary"] == "acc" and set(result["by_k"]) == {0, 1}
  for k in (0, 1):
    flags = []
    for example in task.tests[:8]:
      shown = few_shot.demonstrations(task, example, k, seed=0)
      prompt = [TOK.eot_id] + TOK.encode(few_shot.prompt_text(task, shown, example))
      target = TOK.encode(" " + example.choices[0])
      flags.append(_brute_logprob(model, prompt + target, len(target))[1])
    assert result["by_k"][k]["acc"] == pytest.approx(np.mean(flags))


def test_squad_exact_match_and_f1():
  assert few_shot.normalize_answer("The  Cat, sat!") == "cat sat"
  assert few_shot.exact_match("the cat", ["A cat.", "dog"]) == 1.0
  assert few_shot.exact_match("cat sat", ["cat"]) == 0.0
  assert few_shot.f1("cat sat down", ["the cat sat"]) == pytest.approx(0.8)
  assert few_shot.f1("dog", ["cat", "a dog"]) == 1.0
  assert few_shot.f1("", ["cat"]) == 0.0


@pytest.mark.slow
def test_free_form_answers_are_greedy_decoding(model):
  task = few_shot_tasks.load("synthetic_successor", limit=6)
  prompts = []
  for example in task.tests[:5]:
    shown = few_shot.demonstrations(task, example, 1, seed=0)
    prompts.append(tuple([TOK.eot_id] + TOK.encode(few_shot.prompt_text(task, shown, example))))
  answers = few_shot.greedy_answers(model, prompts, 6, ("\n",))
  for prompt, answer in zip(prompts, answers):
    tokens = list(prompt)
    for _ in range(6):
      tokens.append(int(_full_logp(model, tokens)[-1].argmax()))
    text = TOK.decode(tokens[len(prompt):]).split("\n")[0].strip()
    assert answer == text
  result = few_shot.evaluate(model, task, shots=(1,), max_examples=5)
  expected = np.mean([few_shot.f1(a, e.answers) for a, e in zip(answers, task.tests)])
  assert result["by_k"][1]["f1"] == pytest.approx(expected)
  assert result["primary"] == "f1"


@pytest.mark.slow
def test_bad_input_is_a_clear_error(model):
  cfg = model.cfg
  with pytest.raises(ValueError, match="exceeds the model's context"):
    few_shot.Model(cfg, model.params, TOK, max_len=cfg.context + 1)
  with pytest.raises(ValueError, match="do not belong together"):
    few_shot.Model(dataclasses.replace(cfg, vocab_size=100), model.params, TOK)
  with pytest.raises(ValueError, match="rule='best'"):
    few_shot.evaluate(model, _task(), rules=("best",))
  with pytest.raises(ValueError, match="shots is empty"):
    few_shot.evaluate(model, _task(), shots=())
  with pytest.raises(ValueError, match="max_examples=0"):
    few_shot.evaluate(model, _task(), max_examples=0)
  with pytest.raises(ValueError, match="unknown few-shot task 'squad'.*sst2"):
    few_shot_tasks.load("squad")
  with pytest.raises(ValueError, match="kind='essay'"):
    Task("x", "essay", (), (Example("a", "b", ("c",)),), "train", "test")
  with pytest.raises(ValueError, match="too_few|only 3"):
    few_shot.evaluate(model, _task(n_demos=3), shots=(4,))
  clipped = few_shot.evaluate(model, _task(n_demos=3), shots=(4,), on_too_few="clip",
                              rules=("sum",), max_examples=2)
  assert clipped["by_k"][4]["shots_used"] == 3
