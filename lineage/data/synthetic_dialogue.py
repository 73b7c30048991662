"""A dialogue task in which later turns depend on earlier ones: a shopping list kept over the
conversation.

The user adds words to a list, removes them, or asks how many there are; the assistant
answers each request with the state of the whole list:

  user: add milk        assistant: list: milk
  user: add eggs        assistant: list: milk eggs
  user: remove milk     assistant: list: eggs
  user: how many?       assistant: 1 item

Every reply after the first depends on the earlier turns (a model that reads only the last
message cannot know the list), so a dialogue model's accuracy on those turns measures
whether it uses the conversation and not just the message. `expected_reply` is the checker:
it replays the user turns of any conversation and says what the assistant should answer, so
any reply a model writes can be scored (`is_correct`), not only those in the data.
"""

import dataclasses
import re
from typing import Callable, Sequence

import numpy as np

from lineage.data.chat import Turn, check_conversation

WORDS = ("milk", "eggs", "bread", "tea", "rice", "salt", "jam", "figs", "oats", "plums",
         "corn", "beans")
SYSTEM = "Keep my list."
_ADD, _REMOVE = re.compile(r"add (\w+)"), re.compile(r"remove (\w+)")
COUNT = "how many?"


def replay(user_messages: Sequence[str]) -> list[str]:
  """The list after each user message, as the reply the assistant owes it."""
  items, replies = [], []
  for i, message in enumerate(user_messages):
    text = message.strip()
    if m := _ADD.fullmatch(text):
      items.append(m[1])
    elif m := _REMOVE.fullmatch(text):
      if m[1] not in items:
        raise ValueError(f"user message {i} removes {m[1]!r}, which is not on the list "
                         f"({' '.join(items) or 'empty'})")
      items.remove(m[1])
    elif text != COUNT:
      raise ValueError(f"user message {i} ({text[:40]!r}) is not a request of this task: "
                       f"'add WORD', 'remove WORD' or {COUNT!r}")
    if text == COUNT:
      replies.append(f"{len(items)} item" + ("" if len(items) == 1 else "s"))
    else:
      replies.append("list: " + (" ".join(items) if items else "empty"))
  return replies


def expected_reply(turns: Sequence[Turn]) -> str:
  """What the assistant should answer to a conversation that ends with a user turn."""
  check_conversation(turns)
  if not turns or turns[-1].role != "user":
    raise ValueError("the conversation to answer must end with a user turn")
  return replay([t.content for t in turns if t.role == "user"])[-1]


def is_correct(turns: Sequence[Turn], reply: str) -> bool:
  """Whether `reply` answers the conversation's last user turn (whitespace normalised)."""
  return " ".join(reply.split()) == expected_reply(turns)


def depends_on_history(turns: Sequence[Turn]) -> bool:
  """Whether the answer to the last user turn needs earlier turns: all but the first
  request do (the list they report was built before them)."""
  return sum(t.role == "user" for t in turns) > 1


def wrong_reply(turns: Sequence[Turn], rng: np.random.Generator) -> str:
  """A plausible wrong answer, for the rejected side of a comparison: the right list with a
  word dropped, added or swapped, or a count off by one."""
  right = expected_reply(turns)
  if not right.startswith("list: "):
    n = int(right.split()[0])
    n = n + 1 if n == 0 or rng.random() < 0.5 else n - 1
    return f"{n} item" + ("" if n == 1 else "s")
  items = [] if right == "list: empty" else right.removeprefix("list: ").split()
  choice = rng.integers(3) if items else 1
  if choice == 0:
    del items[rng.integers(len(items))]
  elif choice == 1:
    items.insert(int(rng.integers(len(items) + 1)), str(rng.choice(WORDS)))
  else:
    items[rng.integers(len(items))] = str(rng.choice([w for w in WORDS if w not in items]))
  return "list: " + (" ".join(items) if items else "empty")


def conversation(rng: np.random.Generator, exchanges: int, system=True) -> list[Turn]:
  """A conversation of `exchanges` user requests answered correctly: the first adds a word,
  later ones add (most often), remove a word on the list, or ask for the count."""
  if exchanges < 1:
    raise ValueError(f"exchanges={exchanges}; a conversation has at least one exchange")
  items, messages = [], []
  for i in range(exchanges):
    kind = "add" if i == 0 else rng.choice(["add", "add", "remove", "count"])
    if kind == "remove" and items:
      word = items[rng.integers(len(items))]
      items.remove(word)
      messages.append(f"remove {word}")
    elif kind == "count":
      messages.append(COUNT)
    else:
      word = str(rng.choice([w for w in WORDS if w not in items] or WORDS))
      items.append(word)
      messages.append(f"add {word}")
  turns = [Turn("system", SYSTEM)] if system else []
  for message, reply in zip(messages, replay(messages)):
    turns += [Turn("user", message), Turn("assistant", reply)]
  return turns


def conversations(n: int, seed: int, min_exchanges=1, max_exchanges=4) -> list[list[Turn]]:
  """`n` conversations of min..max exchanges, the same for the same seed."""
  if not 1 <= min_exchanges <= max_exchanges:
    raise ValueError(f"exchanges from {min_exchanges} to {max_exchanges}: need "
                     "1 <= min_exchanges <= max_exchanges")
  rng = np.random.default_rng(seed)
  return [conversation(rng, int(rng.integers(min_exchanges, max_exchanges + 1)))
          for _ in range(n)]


def contexts(dialogues: Sequence[Sequence[Turn]]) -> list[list[Turn]]:
  """Every prefix of the dialogues that ends with a user turn: what a model is asked to
  answer, with the gold history before it."""
  return [list(d[:i + 1]) for d in dialogues for i, t in enumerate(d) if t.role == "user"]


@dataclasses.dataclass(frozen=True)
class Accuracy:
  dependent: float  # replies to turns that need earlier turns
  first: float  # replies to the first request
  num_dependent: int
  num_first: int

  def as_dict(self, prefix=""):
    return {f"{prefix}{k}": v for k, v in dataclasses.asdict(self).items()}


def accuracy(reply_fn: Callable[[list[list[Turn]]], list[str]],
             dialogues: Sequence[Sequence[Turn]]) -> Accuracy:
  """Scores a model on every turn of `dialogues`: reply_fn(contexts) -> one reply each."""
  asked = contexts(dialogues)
  replies = reply_fn(asked)
  if len(replies) != len(asked):
    raise ValueError(f"reply_fn answered {len(replies)} of {len(asked)} contexts")
  right = {True: [], False: []}
  for turns, reply in zip(asked, replies):
    right[depends_on_history(turns)].append(is_correct(turns, reply))
  mean = lambda xs: float(np.mean(xs)) if xs else 0.0
  return Accuracy(mean(right[True]), mean(right[False]), len(right[True]), len(right[False]))
