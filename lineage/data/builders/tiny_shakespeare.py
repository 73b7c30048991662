"""Tiny Shakespeare (karpathy/char-rnn): 1,115,394 characters of plays, for char-level LMs.

Splits follow TFDS's tiny_shakespeare: the first 1,003,854 characters train, the next
55,770 validation, the last 55,770 test (`split_90_5_5`). Each split is one record
`{"text": all of the split}`, so character counts and order are exact.
Manual directory: `$LINEAGE_MANUAL_DIR/tinyshakespeare/input.txt`.
"""

from lineage.data.builders import base


class TinyShakespeare(base.TextStream):
  """Tiny Shakespeare, one record per split."""

  name = "tiny_shakespeare"
  MANUAL_NAME = "tinyshakespeare"
  SOURCE = base.Source(
      ("input.txt",),
      "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
