"""Tokenizers share one small interface: encode, decode, vocab_size, eot_id."""


class ByteTokenizer:
  """UTF-8 bytes as tokens 0..255, plus an end-of-text token 256.

  Decoding replaces byte sequences that are not valid UTF-8 (a model can
  generate them) with U+FFFD rather than failing.
  """
  vocab_size = 257
  eot_id = 256

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, ids) -> str:
    return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")
