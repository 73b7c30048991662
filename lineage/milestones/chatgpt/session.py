"""The chat session: a conversation with a model in a terminal, each reply streamed as it is
generated.

The history is the conversation so far; before each reply it is fitted to the context by
dropping the oldest exchanges (never the system prompt), and the user is told when that
happens. Commands: /reset (forget the conversation), /system TEXT (replace the system
prompt; /system alone removes it), /temp X (sampling temperature, 0 greedy), /help.
What a user types is cleaned before it reaches the model: escape sequences (arrow keys,
colours, pasted terminal codes) and other control characters are removed and reported, an
empty message is ignored with a hint, a message too long for the context is refused with
its length, and end of input (Ctrl-D) ends the chat.
"""

import re

import jax

from lineage import decode
from lineage.data import chat
from lineage.decode.text import IncrementalText

HELP = ("type a message and press Enter; /reset forgets the conversation, /system TEXT sets "
        "the system prompt, /temp X the sampling temperature (0: greedy), Ctrl-D quits")
# ESC [ ... final byte (CSI), ESC ] ... BEL or ESC \ (OSC), ESC and one character, then any
# other C0/C1 control character but the tab.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|"
                      r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(line):
  """(the line without escape sequences and control characters, how many were removed)."""
  text, removed = _CONTROL.subn("", line.rstrip("\r\n"))
  return text.replace("\t", " "), removed


class Session:
  """A conversation with one model. out: a text stream (flushed as tokens arrive)."""

  def __init__(self, model, params, out, system="", temperature=0.0, max_new_tokens=64,
               seed=0):
    if max_new_tokens >= model.model_cfg.context:
      raise ValueError(f"chat.max_new_tokens={max_new_tokens} leaves no room for the "
                       f"conversation in a context of {model.model_cfg.context}; lower it")
    self.model, self.params, self.out = model, params, out
    self.system, self.temperature, self.max_new_tokens = system, temperature, max_new_tokens
    self.rng = jax.random.PRNGKey(seed)
    self.history = []

  def say(self, text):
    self.out.write(text + "\n")
    self.out.flush()

  def turns(self, message=None):
    system = [chat.Turn("system", self.system)] if self.system else []
    user = [chat.Turn("user", message)] if message is not None else []
    return system + self.history + user

  def handle(self, line):
    """One line the user typed: a command or a message (answered, streamed to `out`)."""
    text, removed = clean(line)
    if removed:
      self.say(f"[removed {removed} control character(s) from the message]")
    text = text.strip()
    if not text:
      self.say(f"[empty message ignored: {HELP}]")
    elif text.startswith("/"):
      self.command(text)
    else:
      self.reply(text)

  def command(self, text):
    name, _, arg = text.partition(" ")
    arg = arg.strip()
    if name == "/reset":
      self.history = []
      self.say("[conversation reset]")
    elif name == "/system":
      self.system = arg
      self.say(f"[system prompt set to {arg!r}]" if arg else "[system prompt removed]")
    elif name == "/temp":
      try:
        value = float(arg)
        decode.Sampling(temperature=value)
      except ValueError:
        self.say(f"[/temp needs a number >= 0, e.g. /temp 0.7; got {arg!r}]")
        return
      self.temperature = value
      self.say(f"[temperature {value:g}]")
    elif name == "/help":
      self.say(f"[{HELP}]")
    else:
      self.say(f"[unknown command {name}: {HELP}]")

  def reply(self, message):
    """Streams the model's reply to `message` and adds the exchange to the history."""
    try:
      prompt, dropped = self.model.prompt(self.turns(message), self.max_new_tokens)
    except ValueError as e:
      self.say(f"[message not sent: {e}]")
      return None
    if dropped:
      self.history = self.history[dropped:]
      self.say(f"[the {dropped // 2} oldest exchange(s) no longer fit the context and were "
               "dropped]")
    self.rng, key = jax.random.split(self.rng)
    stream = IncrementalText(self.model.tokenizer.decode_bytes)
    vocab = self.model.tokenizer.vocab_size

    def on_tokens(tokens):
      if 0 <= tokens[0] < vocab:
        self.out.write(stream.push([int(tokens[0])]))
        self.out.flush()

    self.out.write("assistant: ")
    # Prompts padded to the context less the reply: one compiled sampler for the whole chat.
    ids = self.model.generator.generate(
        self.params, [prompt], self.max_new_tokens,
        sampling=decode.Sampling(temperature=self.temperature), rng=key,
        stop_tokens=(self.model.template.end_id,), on_tokens=on_tokens,
        bucket=self.model.model_cfg.context)[0]
    self.say(stream.flush())
    answer = self.model.text(ids)
    self.history += [chat.Turn("user", message), chat.Turn("assistant", answer)]
    return answer

  def run(self, lines, echo=False):
    """Reads lines (a file, stdin) until they end; echo: print each one after the prompt
    (a scripted conversation's transcript). Returns the conversation."""
    self.say(f"[{HELP}]")
    while True:
      self.out.write("you: ")
      self.out.flush()
      line = lines.readline()
      if not line:
        self.say("\n[end of input: goodbye]")
        return self.turns()
      if echo:
        self.out.write(line if line.endswith("\n") else line + "\n")
      self.handle(line)
