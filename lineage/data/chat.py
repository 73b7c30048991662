"""The chat format: system, user and assistant turns around special tokens.

A conversation is a list of `Turn`s. `ChatTemplate` encodes it for a model whose vocabulary
is the tokenizer's plus four special tokens (appended after it, so a pre-trained model keeps
its ids and grows four embedding rows):

  <|system|>TEXT<|end|><|user|>TEXT<|end|><|assistant|>TEXT<|end|>...

The special tokens exist only as ids: text that spells "<|user|>" encodes as ordinary text,
so a message can never forge a turn boundary. `render` and `parse` are the same format as a
string, for logs, prompt files and tests; they refuse text that contains a marker, since the
string form could not tell it from a boundary.

`loss_mask` marks the tokens a dialogue model learns to produce: each assistant turn's text
and its <|end|> (so the model learns when to stop), never the user's or the system's words.
`fit` keeps a conversation within the context by dropping the oldest turns after the system
prompt. `parse_hh` reads Anthropic HH-RLHF transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...").
"""

import dataclasses
import re
from typing import Sequence

ROLES = ("system", "user", "assistant")
MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END = "<|end|>"
_SPECIALS = (*MARKERS.values(), END)
_RENDERED = re.compile("(" + "|".join(re.escape(m) for m in _SPECIALS) + ")")


@dataclasses.dataclass(frozen=True)
class Turn:
  role: str
  content: str

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f"unknown chat role {self.role!r}; the roles are {', '.join(ROLES)}")


def check_conversation(turns: Sequence[Turn]):
  """At most one system turn, first; then user and assistant alternate, starting with user."""
  body = list(turns)
  if body and body[0].role == "system":
    body = body[1:]
  for i, turn in enumerate(body):
    expected = ("user", "assistant")[i % 2]
    if turn.role != expected:
      raise ValueError(f"turn {i + len(turns) - len(body)} is a {turn.role} turn where a "
                       f"{expected} turn belongs: a conversation is an optional system turn, "
                       "then user and assistant turns alternating, starting with the user")


def render(turns: Sequence[Turn]) -> str:
  """The conversation as a string in the template's format."""
  check_conversation(turns)
  for turn in turns:
    marker = _RENDERED.search(turn.content)
    if marker:
      raise ValueError(f"a {turn.role} turn contains a chat marker ({marker[0]}), which the "
                       "string form cannot tell from a turn boundary; encode it with "
                       "ChatTemplate.encode, where markers in text stay text")
  return "".join(f"{MARKERS[t.role]}{t.content}{END}" for t in turns)


def parse(text: str) -> list[Turn]:
  """The inverse of `render`: a clear error for anything `render` would not produce."""
  pieces = _RENDERED.split(text)
  roles = {marker: role for role, marker in MARKERS.items()}
  turns = []
  if pieces[0]:
    raise ValueError(f"text before the first chat marker: {pieces[0][:40]!r}")
  rest = pieces[1:]
  if len(rest) % 4:
    raise ValueError("a chat transcript is a sequence of MARKER TEXT <|end|>; this one is cut "
                     "short or has a stray marker")
  for i in range(0, len(rest), 4):
    marker, content, end, between = rest[i:i + 4]
    if marker not in roles or end != END or between:
      raise ValueError(f"malformed turn {i // 4}: expected a role marker, its text and {END}, "
                       f"got {marker!r} ... {end!r}")
    turns.append(Turn(roles[marker], content))
  check_conversation(turns)
  return turns


class ChatTemplate:
  """Encodes conversations with a tokenizer (lineage.data.tokenizers) plus four special ids.

  vocab_size: the tokenizer's plus four; a chat model needs at least this many embeddings.
  end_id: <|end|>, the stop token when generating an assistant turn.
  """

  def __init__(self, tokenizer):
    self.tokenizer = tokenizer
    base = tokenizer.vocab_size
    self.marker_ids = {role: base + i for i, role in enumerate(ROLES)}
    self.end_id = base + len(ROLES)
    self.vocab_size = base + len(_SPECIALS)
    self._roles = {i: role for role, i in self.marker_ids.items()}

  def encode(self, turns: Sequence[Turn], generation_prompt=False) -> tuple[list[int], list[int]]:
    """(ids, loss_mask); `generation_prompt` appends <|assistant|> for the model to continue."""
    check_conversation(turns)
    ids, mask = [], []
    for turn in turns:
      text = self.tokenizer.encode(turn.content)
      learned = int(turn.role == "assistant")
      ids += [self.marker_ids[turn.role], *text, self.end_id]
      mask += [0, *[learned] * len(text), learned]
    if generation_prompt:
      if turns and turns[-1].role != "user":
        raise ValueError("a generation prompt follows a user turn; this conversation ends with "
                         f"a {turns[-1].role} turn")
      ids.append(self.marker_ids["assistant"])
      mask.append(0)
    return ids, mask

  def decode(self, ids: Sequence[int]) -> list[Turn]:
    """Turns from ids that `encode` produced; a final turn without <|end|> is kept as it is
    (a reply cut short, or one still being generated)."""
    turns, role, text = [], None, []
    for i in map(int, ids):
      if i in self._roles:
        if role is not None:
          raise ValueError(f"a {self._roles[i]} marker inside an unfinished {role} turn")
        role, text = self._roles[i], []
      elif i == self.end_id:
        if role is None:
          raise ValueError(f"{END} outside a turn")
        turns.append(Turn(role, self.tokenizer.decode(text)))
        role = None
      elif role is None:
        raise ValueError("text outside a turn: every turn starts with a role marker")
      else:
        text.append(i)
    if role is not None:
      turns.append(Turn(role, self.tokenizer.decode(text)))
    return turns

  def fit(self, turns: Sequence[Turn], max_tokens: int, generation_prompt=False):
    """(turns, dropped): the oldest user-assistant exchanges after the system prompt dropped
    until the encoding fits in `max_tokens`. The system prompt and the last user turn are
    never dropped; when even they do not fit, the error says by how much."""
    turns = list(turns)
    system = turns[:1] if turns and turns[0].role == "system" else []
    body = turns[len(system):]
    dropped = 0
    while True:
      kept = system + body
      length = len(self.encode(kept, generation_prompt)[0])
      if length <= max_tokens:
        return kept, dropped
      if len(body) <= 2 - (len(body) % 2):  # only the last exchange (or user turn) is left
        raise ValueError(f"the system prompt and the last message take {length} tokens, more "
                         f"than the {max_tokens} the context allows; shorten the message or "
                         "the system prompt")
      body = body[2:]
      dropped += 2


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh(transcript: str) -> list[Turn]:
  """An HH-RLHF transcript as user and assistant turns (leading spaces stripped)."""
  pieces = _HH_TURN.split(transcript)
  if pieces[0].strip():
    raise ValueError(f"an HH-RLHF transcript starts with '\\n\\nHuman:'; got {transcript[:40]!r}")
  roles = {"Human": "user", "Assistant": "assistant"}
  turns = [Turn(roles[speaker], text.strip())
           for speaker, text in zip(pieces[1::2], pieces[2::2])]
  check_conversation(turns)
  return turns
