"""Text on the host side of decoding: stop strings and streaming UTF-8."""

import codecs


def find_stop(text, stop_strings):
  """Index of the earliest stop string in `text`, or None."""
  found = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
  return min(found) if found else None


def cut_at_stop(text, stop_strings):
  """`text` before its first stop string (Codex truncates completions at "\\ndef" and the like)."""
  index = find_stop(text, stop_strings)
  return text if index is None else text[:index]


class IncrementalText:
  """Text of tokens pushed one batch at a time, for printing a stream as it comes.

  A byte-level tokenizer can split one UTF-8 character across tokens; its first
  bytes are held back until the rest arrives, rather than printed as U+FFFD.
  """

  def __init__(self, decode_bytes):
    self._decode_bytes = decode_bytes
    self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

  def push(self, ids):
    """The text that `ids` complete (not what earlier pushes returned)."""
    return self._utf8.decode(self._decode_bytes(list(ids)))

  def flush(self):
    """Whatever is held back, an incomplete character as U+FFFD."""
    return self._utf8.decode(b"", final=True)
