"""A preference task with a hidden programmatic labeller: additions answered well or badly.

The prompt is "a+b=". An answer is correct or not, and concise (the number alone) or verbose
(the number inside a sentence). The labeller prefers correct to incorrect and concise to
verbose, scoring any text:
  1.0   exactly the right number
  0.5   a sentence whose last number is the right one
  0.0   a wrong number alone
  -0.5  anything else (a wrong sentence, no number, an empty answer)
A noisy demonstrator writes the SFT data: verbose half the time, wrong 30% of the time, so
the SFT model imitates a mixture and there is room to improve on it. Comparisons show the
labeller K = 4 answers to one prompt, one of each kind, ranked by its score. Because the
labeller can also score whatever a policy generates, the whole pipeline (reward model, PPO,
DPO) is checked against the true preference and not only against the learned reward.
"""

import dataclasses
import re

import numpy as np

VERBOSE = ("so {a}+{b} is {c}", "I think it is {c}", "the answer is {c}")


@dataclasses.dataclass(frozen=True)
class Arithmetic:
  """Additions of operands 0..max_operand; p_verbose and p_wrong shape the demonstrator."""
  max_operand: int = 9
  p_verbose: float = 0.5
  p_wrong: float = 0.3

  def prompts(self):
    return [f"{a}+{b}=" for a in range(self.max_operand + 1)
            for b in range(self.max_operand + 1)]

  @staticmethod
  def operands(prompt):
    match = re.fullmatch(r"(\d+)\+(\d+)=", prompt)
    if match is None:
      raise ValueError(f"{prompt!r} is not a prompt of this task (expected 'a+b=')")
    return int(match.group(1)), int(match.group(2))

  def score(self, prompt, response):
    """The hidden labeller's score of any response text to `prompt`."""
    a, b = self.operands(prompt)
    right = str(a + b)
    if response == right:
      return 1.0
    if re.fullmatch(r"\d+", response):
      return 0.0
    numbers = re.findall(r"\d+", response)
    if numbers and numbers[-1] == right:
      return 0.5
    return -0.5

  def answer(self, rng, prompt, correct, verbose):
    """One response of the given kind: a wrong one is off by 1 to 3 (never negative)."""
    a, b = self.operands(prompt)
    c = a + b
    if not correct:
      offsets = [d for d in (-3, -2, -1, 1, 2, 3) if c + d >= 0]
      c += int(rng.choice(offsets))
    if verbose:
      return VERBOSE[int(rng.integers(len(VERBOSE)))].format(a=a, b=b, c=c)
    return str(c)

  def demonstrations(self, n, seed):
    """n (prompt, response) pairs from the noisy demonstrator."""
    rng = np.random.default_rng([seed, 0])
    prompts = self.prompts()
    out = []
    for _ in range(n):
      prompt = prompts[int(rng.integers(len(prompts)))]
      out.append((prompt, self.answer(rng, prompt, correct=rng.random() >= self.p_wrong,
                                      verbose=rng.random() < self.p_verbose)))
    return out

  def comparisons(self, n, seed):
    """n (prompt, [4 responses], [their scores]): one of each kind, in random order."""
    rng = np.random.default_rng([seed, 1])
    prompts = self.prompts()
    out = []
    for _ in range(n):
      prompt = prompts[int(rng.integers(len(prompts)))]
      responses = [self.answer(rng, prompt, correct, verbose)
                   for correct in (True, False) for verbose in (False, True)]
      order = rng.permutation(len(responses))
      responses = [responses[i] for i in order]
      out.append((prompt, responses, [self.score(prompt, r) for r in responses]))
    return out
