"""The shopping-list dialogue task: replies that follow the whole conversation, a checker of
any reply, history-dependent turns told apart, deterministic data, wrong replies that are
wrong, and the per-turn accuracy of a reply function."""

import numpy as np
import pytest

from lineage.data import chat
from lineage.data import synthetic_dialogue as sd

T = chat.Turn


def test_replay_keeps_the_list_over_the_conversation():
  assert sd.replay(["add milk", "add eggs", "remove milk", "how many?", "remove eggs",
                    "how many?"]) == ["list: milk", "list: milk eggs", "list: eggs", "1 item",
                                      "list: empty", "0 items"]


def test_replay_refuses_unknown_requests_and_removing_what_is_absent():
  with pytest.raises(ValueError, match="not a request of this task"):
    sd.replay(["buy milk"])
  with pytest.raises(ValueError, match="not on the list"):
    sd.replay(["add milk", "remove tea"])


def test_checker_scores_any_reply_against_the_history():
  turns = [T("system", sd.SYSTEM), T("user", "add tea"), T("assistant", "list: tea"),
           T("user", "add jam")]
  assert sd.expected_reply(turns) == "list: tea jam"
  assert sd.is_correct(turns, "  list:  tea jam ")
  assert not sd.is_correct(turns, "list: jam")  # what a model blind to the history says
  assert sd.depends_on_history(turns) and not sd.depends_on_history(turns[:2])
  with pytest.raises(ValueError, match="must end with a user turn"):
    sd.expected_reply(turns[:3])


def test_conversations_are_correct_deterministic_and_valid_chats():
  a, b = sd.conversations(50, seed=3), sd.conversations(50, seed=3)
  assert a == b and a != sd.conversations(50, seed=4)
  for turns in a:
    chat.check_conversation(turns)
    assert turns[0] == T("system", sd.SYSTEM) and turns[1].content.startswith("add ")
    for i, turn in enumerate(turns):
      if turn.role == "assistant":
        assert sd.is_correct(turns[:i], turn.content)
  kinds = {t.content.split()[0] for d in a for t in d if t.role == "user"}
  assert kinds == {"add", "remove", "how"}
  assert {len(d) for d in a} == {3, 5, 7, 9}
  with pytest.raises(ValueError, match="min_exchanges"):
    sd.conversations(1, 0, min_exchanges=3, max_exchanges=2)


def test_wrong_replies_are_wrong():
  rng = np.random.default_rng(0)
  for context in sd.contexts(sd.conversations(100, seed=1)):
    assert not sd.is_correct(context, sd.wrong_reply(context, rng))


def test_contexts_and_accuracy_split_first_and_dependent_turns():
  dialogues = sd.conversations(20, seed=2, min_exchanges=2, max_exchanges=3)
  asked = sd.contexts(dialogues)
  assert all(c[-1].role == "user" for c in asked)
  assert len(asked) == sum(t.role == "user" for d in dialogues for t in d)
  perfect = sd.accuracy(lambda cs: [sd.expected_reply(c) for c in cs], dialogues)
  assert perfect.dependent == perfect.first == 1.0
  assert perfect.num_first == 20 and perfect.num_dependent == len(asked) - 20
  # A model that reads only the last message gets first turns right, dependent ones rarely.
  blind = sd.accuracy(lambda cs: [sd.expected_reply(c[-1:]) if c[-1].content.startswith("add")
                                  else "0 items" for c in cs], dialogues)
  assert blind.first == 1.0 and blind.dependent < 0.2
  assert blind.as_dict("sft_")["sft_first"] == 1.0
  with pytest.raises(ValueError, match="answered 0 of"):
    sd.accuracy(lambda cs: [], dialogues)
