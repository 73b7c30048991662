"""text8 (Mahoney): enwik8 cleaned to lowercase a-z and spaces, 10^8 characters.

Records are `{"text": up to CHUNK characters}`, consecutive 1M-character slices in
order (a split is its records concatenated). Splits by `split_90_5_5` of the file
length: 90M/5M/5M for the real file, proportional for smaller ones. Manual file: text8.
"""

from lineage.data.builders import base


class Text8(base.TextStream):
  """text8 as text chunks."""

  name = "text8"
  SOURCE = base.Source(("text8",), "http://mattmahoney.net/dc/text8.zip", "text8")
  CHUNK = 1 << 20
