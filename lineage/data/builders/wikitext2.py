"""WikiText-2 (Merity et al. 2016), for word-level LM perplexity.

One record per line, `{"text": line}`, in file order, blank lines included: the
standard count adds one `<eos>` per line (245,569 test tokens). Configs: `tokens`
(wiki.{train,valid,test}.tokens, `<unk>` and `@-@`) and `raw` (wiki.*.raw).
"""

import tensorflow_datasets as tfds

from lineage.data.builders import base

_SPLITS = (("train", "train"), ("validation", "valid"), ("test", "test"))


class Wikitext2(base.TextLines):
  """WikiText-2, tokenized or raw, one line per record."""

  name = "wikitext2"
  ARCHIVES = {"tokens": ("https://wikitext.smerity.com/wikitext-2-v1.zip", "wikitext-2"),
              "raw": ("https://wikitext.smerity.com/wikitext-2-raw-v1.zip", "wikitext-2-raw")}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="tokens", description="wiki.*.tokens"),
                     tfds.core.BuilderConfig(name="raw", description="wiki.*.raw")]

  def sources(self):
    kind = self.builder_config.name
    url, folder = self.ARCHIVES[kind]
    return {split: base.Source((f"wiki.{stem}.{kind}",), url, f"{folder}/wiki.{stem}.{kind}")
            for split, stem in _SPLITS}
