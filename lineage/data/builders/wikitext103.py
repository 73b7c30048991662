"""WikiText-103: WikiText-2's format and protocol over 103M training tokens.

One record per line, `{"text": line}`, in file order; configs `tokens` and `raw`.
"""

from lineage.data.builders import wikitext2


class Wikitext103(wikitext2.Wikitext2):
  """WikiText-103, tokenized or raw, one line per record."""

  name = "wikitext103"
  ARCHIVES = {"tokens": ("https://wikitext.smerity.com/wikitext-103-v1.zip", "wikitext-103"),
              "raw": ("https://wikitext.smerity.com/wikitext-103-raw-v1.zip", "wikitext-103-raw")}
