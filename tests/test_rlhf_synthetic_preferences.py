"""The synthetic preference task: its labeller's scores, the demonstrator's mixture, the
comparisons' rankings."""

import numpy as np
import pytest

from lineage.data.synthetic_preferences import Arithmetic


def test_labeller_prefers_correct_then_concise():
  task = Arithmetic()
  assert task.score("3+4=", "7") == 1.0
  assert task.score("3+4=", "so 3+4 is 7") == 0.5
  assert task.score("3+4=", "8") == 0.0
  assert task.score("3+4=", "the answer is 8") == -0.5
  assert task.score("3+4=", "") == -0.5
  assert task.score("3+4=", "seven") == -0.5
  with pytest.raises(ValueError, match="a\\+b="):
    task.score("what is 3+4", "7")


def test_demonstrations_mix_kinds_and_comparisons_rank_them():
  task = Arithmetic()
  demos = task.demonstrations(2000, seed=0)
  scores = np.array([task.score(p, r) for p, r in demos])
  # correct concise 0.35, correct verbose 0.35, wrong concise 0.15, wrong verbose 0.15.
  for value, share in ((1.0, 0.35), (0.5, 0.35), (0.0, 0.15), (-0.5, 0.15)):
    assert (scores == value).mean() == pytest.approx(share, abs=0.04)
  assert demos == task.demonstrations(2000, seed=0)
  assert demos != task.demonstrations(2000, seed=1)
  for prompt, responses, prefs in task.comparisons(50, seed=0):
    assert sorted(prefs) == [-0.5, 0.0, 0.5, 1.0]
    assert prefs == [task.score(prompt, r) for r in responses]
  assert len(task.prompts()) == 100
