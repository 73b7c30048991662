"""Tokenizers share one small interface: encode, decode, decode_bytes, vocab_size, eot_id.

Conventions common to all of them, so a run can swap one for another:
- `encode` treats its input as ordinary text: "<|endoftext|>" inside a document is encoded
  as its characters, never as `eot_id`, so data cannot forge a document boundary.
- A Python str can hold lone surrogates, which UTF-8 cannot encode. Every tokenizer here
  does what tiktoken does: the text goes through UTF-16 with "surrogatepass", so a surrogate
  pair written as two code points becomes the character it stands for, and each unpaired
  surrogate becomes U+FFFD.
- `decode` drops `eot_id` and ids outside the vocabulary (a model with a padded vocabulary
  can sample them), and replaces bytes that are not valid UTF-8 (a model can generate them,
  and a cut can split a character) with U+FFFD. `decode_bytes` gives the exact bytes.
  GPT-1's BPE is the exception that cannot round-trip: its pre-tokenizer keeps neither case
  nor spacing, and it has no byte fallback for characters outside its vocabulary.
"""

import hashlib
import os
import pathlib
from unittest import mock

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public
import tokenizers  # Hugging Face's package; absolute imports do not resolve to this module.

EOT_TEXT = "<|endoftext|>"


def _without_lone_surrogates(text: str) -> str:
  try:
    text.encode("utf-8")
    return text
  except UnicodeEncodeError:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _text_ids(ids, vocab_size: int, eot_id: int) -> list[int]:
  return [int(i) for i in ids if 0 <= i < vocab_size and i != eot_id]


class ByteTokenizer:
  """UTF-8 bytes as tokens 0..255, plus an end-of-text token 256."""
  vocab_size = 257
  eot_id = 256

  def encode(self, text: str) -> list[int]:
    return list(_without_lone_surrogates(text).encode("utf-8"))

  def decode_bytes(self, ids) -> bytes:
    return bytes(_text_ids(ids, self.vocab_size, self.eot_id))

  def decode(self, ids) -> str:
    return self.decode_bytes(ids).decode("utf-8", errors="replace")


GPT2_FILES = {  # name: (published sha256, where to get it)
    name: (sha256, f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{name}")
    for name, sha256 in [
        ("encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        ("vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5")]
}
MANUAL_DIR_ENV = "LINEAGE_MANUAL_DIR"


def _find_vocab_files(vocab_dir, subdir: str, files: dict, what: str) -> list[pathlib.Path]:
  """The paths of `files` in `vocab_dir`, else in $LINEAGE_MANUAL_DIR/`subdir`/.

  Runs have no network, so the files are placed by hand, and a missing one is an error that
  says where to put it and where to download it.
  """
  if vocab_dir is not None:
    directory = pathlib.Path(vocab_dir)
  elif os.environ.get(MANUAL_DIR_ENV):
    directory = pathlib.Path(os.environ[MANUAL_DIR_ENV]) / subdir
  else:
    directory = pathlib.Path(f"${MANUAL_DIR_ENV}") / subdir
  paths = [directory / name for name in files]
  missing = [p for p in paths if not p.is_file()]
  if missing:
    wanted = "\n".join(f"  {p}  <-  {files[p.name][1]}" for p in paths)
    raise FileNotFoundError(
        f"{what} vocabulary files missing: {', '.join(map(str, missing))}. Expected (download "
        f"each from its URL):\n{wanted}\nPass the directory that holds them, or set "
        f"${MANUAL_DIR_ENV} so that they are in ${MANUAL_DIR_ENV}/{subdir}/.")
  return paths


def find_gpt2_bpe(vocab_dir=None) -> tuple[pathlib.Path, pathlib.Path]:
  """(encoder.json, vocab.bpe) in `vocab_dir`, else in $LINEAGE_MANUAL_DIR/gpt2_bpe/."""
  encoder_json, vocab_bpe = _find_vocab_files(vocab_dir, "gpt2_bpe", GPT2_FILES, "GPT-2")
  return encoder_json, vocab_bpe


def _check_sha256(path: pathlib.Path, name: str, files: dict = GPT2_FILES, what: str = "GPT-2"):
  with open(path, "rb") as f:
    actual = hashlib.file_digest(f, "sha256").hexdigest()
  expected, url = files[name]
  if actual != expected:
    raise ValueError(f"{path} is not {what}'s {name}: sha256 {actual}, expected {expected}. "
                     f"Download the published file from {url}")


class GPT2BPE:
  """GPT-2's byte-level BPE, id for id the same as tiktoken's "gpt2" encoding."""
  vocab_size = 50257
  eot_id = 50256

  def __init__(self, encoding: tiktoken.Encoding):
    self._encoding = encoding

  @classmethod
  def from_files(cls, encoder_json, vocab_bpe) -> "GPT2BPE":
    """Checks the files against the published hashes: a wrong vocabulary fails here, not as
    a model that silently reads different ids."""
    encoder_json, vocab_bpe = pathlib.Path(encoder_json), pathlib.Path(vocab_bpe)
    _check_sha256(encoder_json, "encoder.json")
    _check_sha256(vocab_bpe, "vocab.bpe")
    # With its cache on, tiktoken returns whatever it once cached under the same path.
    with mock.patch.dict(os.environ, {"TIKTOKEN_CACHE_DIR": ""}):
      ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
    return cls(tiktoken.Encoding(name="gpt2", pat_str=tiktoken_ext.openai_public.r50k_pat_str,
                                 mergeable_ranks=ranks, special_tokens={EOT_TEXT: cls.eot_id}))

  @classmethod
  def from_dir(cls, vocab_dir=None) -> "GPT2BPE":
    return cls.from_files(*find_gpt2_bpe(vocab_dir))

  def encode(self, text: str) -> list[int]:
    return self._encoding.encode_ordinary(text)

  def decode_bytes(self, ids) -> bytes:
    return self._encoding.decode_bytes(_text_ids(ids, self.vocab_size, self.eot_id))

  def decode(self, ids) -> str:
    return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _byte_level_alphabet() -> dict[str, int]:
  """GPT-2's (and Hugging Face's ByteLevel) characters for bytes: printable ones stand for
  themselves, the others for chr(256 + n) in byte order."""
  printable = [b for b in range(256) if chr(b).isprintable() and b != ord(" ")]
  others = [b for b in range(256) if b not in printable]
  return {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}


class ByteLevelBPE:
  """A byte-level BPE trained with Hugging Face `tokenizers`, for corpora with no vocabulary
  of their own; saved as tokenizer.json in the run's workdir so that resume reuses it."""

  def __init__(self, tokenizer: tokenizers.Tokenizer):
    tokenizer.encode_special_tokens = True  # "<|endoftext|>" in text is text; not saved.
    self._tokenizer = tokenizer
    self.vocab_size = tokenizer.get_vocab_size()
    self.eot_id = tokenizer.token_to_id(EOT_TEXT)
    byte_of = _byte_level_alphabet()
    self._token_bytes = [bytes(byte_of[c] for c in tokenizer.id_to_token(i))
                         for i in range(self.vocab_size)]

  @classmethod
  def load(cls, path) -> "ByteLevelBPE":
    return cls(tokenizers.Tokenizer.from_file(str(path)))

  def save(self, path):
    """Written whole or not at all, so a run killed while saving cannot resume from half."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    self._tokenizer.save(str(tmp))
    os.replace(tmp, path)

  def encode(self, text: str) -> list[int]:
    return self._tokenizer.encode(_without_lone_surrogates(text), add_special_tokens=False).ids

  def decode_bytes(self, ids) -> bytes:
    return b"".join(self._token_bytes[i] for i in _text_ids(ids, self.vocab_size, self.eot_id))

  def decode(self, ids) -> str:
    return self._tokenizer.decode(_text_ids(ids, self.vocab_size, self.eot_id))


def train_bpe(texts, vocab_size: int) -> ByteLevelBPE:
  """Trains on an iterable of str. The 256 byte tokens are always in the vocabulary, so any
  text round-trips exactly; the result is the same for the same texts."""
  if vocab_size < 257:
    raise ValueError(f"vocab_size={vocab_size}: a byte-level BPE needs at least 257 tokens "
                     "(256 bytes and <|endoftext|>)")
  tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=[EOT_TEXT], show_progress=False,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tokenizer.train_from_iterator((_without_lone_surrogates(t) for t in texts), trainer=trainer)
  return ByteLevelBPE(tokenizer)


_GPT1_SOURCE = ("https://raw.githubusercontent.com/openai/finetune-transformer-lm/"
                "a69b5c43b0452462890bca8ff92fb75dee9290cf/model/")
GPT1_FILES = {  # name: (sha256 of the file in OpenAI's repository, where to get it)
    name: (sha256, _GPT1_SOURCE + name)
    for name, sha256 in [
        ("encoder_bpe_40000.json",
         "fdf49b19e7de236852091da09b84a7a3cd5e7b0e79916376cf45f6b8127b8078"),
        ("vocab_40000.bpe", "0ea9b51ae695073cd871e0358f7016311d671a7ff3963e367d5236522f294725")]
}
# What GPT-1's fine-tuning appends after the vocabulary (its Figure 1 input transformations).
GPT1_SPECIAL_TOKENS = ("_start_", "_delimiter_", "_classify_")
# text_standardize's character replacements (openai/finetune-transformer-lm text_utils.py).
_GPT1_STANDARD_CHARACTERS = str.maketrans({"\u2014": "-", "\u2013": "-", "\u2015": "-",
                                           "\u2026": "...", "\u00b4": "'"})


def find_gpt1_bpe(vocab_dir=None) -> tuple[pathlib.Path, pathlib.Path]:
  """(encoder_bpe_40000.json, vocab_40000.bpe) in `vocab_dir`, else in
  $LINEAGE_MANUAL_DIR/gpt1_bpe/."""
  encoder_json, vocab_bpe = _find_vocab_files(vocab_dir, "gpt1_bpe", GPT1_FILES, "GPT-1")
  return encoder_json, vocab_bpe


def standardize_gpt1_text(text: str) -> str:
  """The character replacements of GPT-1's `text_standardize` (dashes to "-", "…" to "...",
  "´" to "'"): its vocabulary was learnt on text without those characters, so unreplaced
  they are <unk>. The rest of text_standardize spaces out punctuation runs and newlines for
  spaCy, which BERT's pre-tokenizer (splitting at every punctuation mark and all whitespace)
  makes redundant."""
  return text.translate(_GPT1_STANDARD_CHARACTERS)


class GPT1BPE:
  """GPT-1's 40,000-merge BPE with `</w>` word ends, id for id the same as transformers'
  `OpenAIGPTTokenizer` built from the same two files.

  Pre-tokenizer: BERT's (clean control characters, lowercase, strip accents, split at
  whitespace, punctuation and CJK characters), as transformers' OpenAIGPTTokenizer does: since
  transformers 5 it has no ftfy+spaCy path at all (that was the old slow tokenizer, and only
  when both were installed; its fallback was the same BERT BasicTokenizer). The paper's own
  pipeline (ftfy, text_standardize, spaCy's English tokenizer) differs on contractions ("don't"
  is "don ' t" here) and on characters outside the vocabulary; `standardize=True` adds
  text_standardize's replacements, which change only words where transformers gives <unk>.
  A character outside the vocabulary is <unk> (id 0), one per character.

  GPT-1 has no end-of-text token among its 40,478. `special_tokens` are appended with ids
  40478, 40479, ... (by default the paper's fine-tuning tokens `_start_`, `_delimiter_`,
  `_classify_`); the first is `eot_id`. `_start_` begins every fine-tuning input, so it plays
  the part of GPT-2's <|endoftext|>: what goes between packed documents and before a scored
  text. Special tokens are never matched in text, and `decode` drops them and <unk>, like
  transformers' decode(skip_special_tokens=True).
  """
  base_vocab_size = 40478
  unk_token = "<unk>"

  def __init__(self, tokenizer: tokenizers.Tokenizer, special_tokens=GPT1_SPECIAL_TOKENS,
               standardize: bool = False):
    base = tokenizer.get_vocab_size(with_added_tokens=False)
    if base != self.base_vocab_size or tokenizer.token_to_id(self.unk_token) != 0:
      raise ValueError(f"a GPT-1 vocabulary has {self.base_vocab_size} entries with "
                       f"{self.unk_token} as id 0; this one has {base}")
    special_tokens = tuple(special_tokens)
    problems = [f"{t!r} is already in the vocabulary as id {tokenizer.token_to_id(t)}"
                for t in special_tokens if tokenizer.token_to_id(t) is not None]
    if not special_tokens or len(set(special_tokens)) != len(special_tokens):
      problems.append(f"special_tokens={special_tokens} must be distinct and at least one (the "
                      "first is eot_id)")
    if problems:
      raise ValueError("GPT-1 special tokens: " + "; ".join(problems))
    tokenizer.add_special_tokens([self.unk_token, *special_tokens])
    tokenizer.encode_special_tokens = True  # "_start_" in text is text; not saved.
    self._tokenizer = tokenizer
    self.standardize = standardize
    self.special_ids = {t: tokenizer.token_to_id(t) for t in special_tokens}
    self.vocab_size = tokenizer.get_vocab_size()
    self.eot_id = self.special_ids[special_tokens[0]]
    pieces = [tokenizer.id_to_token(i) for i in range(1, self.base_vocab_size)]
    self._token_text = ["", *(p.removesuffix("</w>") + " " if p.endswith("</w>") else p
                              for p in pieces), *[""] * len(special_tokens)]

  @classmethod
  def from_files(cls, encoder_json, vocab_bpe, special_tokens=GPT1_SPECIAL_TOKENS,
                 standardize: bool = False) -> "GPT1BPE":
    """Checks the files against OpenAI's: a wrong vocabulary fails here, not as a model that
    silently reads different ids."""
    encoder_json, vocab_bpe = pathlib.Path(encoder_json), pathlib.Path(vocab_bpe)
    _check_sha256(encoder_json, "encoder_bpe_40000.json", GPT1_FILES, "GPT-1")
    _check_sha256(vocab_bpe, "vocab_40000.bpe", GPT1_FILES, "GPT-1")
    model = tokenizers.models.BPE.from_file(
        str(encoder_json), str(vocab_bpe), unk_token=cls.unk_token, end_of_word_suffix="</w>",
        continuing_subword_prefix="", fuse_unk=False)
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = tokenizers.decoders.BPEDecoder(suffix="</w>")
    return cls(tokenizer, special_tokens, standardize)

  @classmethod
  def from_dir(cls, vocab_dir=None, special_tokens=GPT1_SPECIAL_TOKENS,
               standardize: bool = False) -> "GPT1BPE":
    return cls.from_files(*find_gpt1_bpe(vocab_dir), special_tokens, standardize)

  def encode(self, text: str) -> list[int]:
    text = _without_lone_surrogates(text)
    if self.standardize:
      text = standardize_gpt1_text(text)
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids) -> str:
    """Lowercased words joined by spaces, punctuation spaced out: BERT's pre-tokenizer does
    not keep the original spacing, so this is not the text that was encoded."""
    return self._tokenizer.decode(_text_ids(ids, self.vocab_size, self.eot_id),
                                  skip_special_tokens=True)

  def decode_bytes(self, ids) -> bytes:
    """The UTF-8 of `decode` with a space after the last word too, so that pieces decoded
    one at a time (a stream, `IncrementalText`) join into the whole. GPT-1's tokens are
    characters, not bytes: no id stands for part of a character."""
    return "".join(self._token_text[i] for i in _text_ids(ids, self.vocab_size, self.eot_id)
                   ).encode("utf-8")


TOKENIZERS = ("byte", "gpt2", "bpe", "gpt1")


def make_tokenizer(name: str, *, vocab_dir=None, workdir=None, train_texts=None,
                   vocab_size=None):
  """The tokenizer a config names. "bpe" reloads workdir/tokenizer.json when a previous run
  saved one (its ids must not change on resume), else trains on `train_texts` and saves it."""
  if name == "byte":
    return ByteTokenizer()
  if name == "gpt2":
    return GPT2BPE.from_dir(vocab_dir)
  if name == "gpt1":
    return GPT1BPE.from_dir(vocab_dir)
  if name == "bpe":
    if workdir is None:
      raise ValueError("the bpe tokenizer needs a workdir to save tokenizer.json in")
    path = pathlib.Path(workdir) / "tokenizer.json"
    if path.is_file():
      return ByteLevelBPE.load(path)
    if train_texts is None or vocab_size is None:
      raise ValueError(f"no {path} yet: training the bpe tokenizer needs train_texts and "
                       "vocab_size")
    tokenizer = train_bpe(train_texts, vocab_size)
    tokenizer.save(path)
    return tokenizer
  raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
