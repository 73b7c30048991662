"""Synthetic product reviews whose sentiment is a latent variable, and the lexicon that scores it.

The sentiment neuron (Radford et al. 2017) appears because predicting the next
byte of a review is easier once the model knows whether the review is positive:
the writer's mood persists from sentence to sentence. These reviews have that
property without a single giveaway token: each one draws its label first, then
expresses it through many interchangeable words and phrases (dozens of
adjectives, verbs, verdicts, star ratings), negations of the opposite polarity
("not bad"), and a minority of opposite-polarity phrases in mixed sentences,
all among distractors independent of the label (product, brand, aspect, length,
neutral sentences, negations with no sentiment). The verdict sits anywhere and
a third of the reviews end on a neutral sentence, so the label is not in the last
bytes either: a model must carry it through the review.

`sentiment_score` reads text with the same lexicon and negation rule the
generator writes with, so it can score any text, model samples included.
"""

import dataclasses
import re

import numpy as np

POSITIVE_ADJECTIVES = (
    "great", "excellent", "wonderful", "fantastic", "superb", "amazing", "brilliant", "lovely",
    "perfect", "solid", "reliable", "impressive", "good", "nice", "sturdy", "beautiful")
NEGATIVE_ADJECTIVES = (
    "terrible", "awful", "horrible", "poor", "bad", "dreadful", "disappointing", "flimsy",
    "useless", "broken", "mediocre", "lousy", "shoddy", "defective", "annoying", "ugly")
POSITIVE_VERBS = ("love", "adore", "enjoy", "really love", "absolutely love", "appreciate")
NEGATIVE_VERBS = ("hate", "dislike", "really hate", "absolutely hate", "despise", "resent")
VERB_LEXICON = {"love": 1.0, "adore": 1.0, "enjoy": 1.0, "appreciate": 1.0,
                "hate": -1.0, "dislike": -1.0, "despise": -1.0, "resent": -1.0}
POSITIVE_VERDICTS = (
    "i would recommend it to anyone", "highly recommended", "five stars", "four stars",
    "worth every penny", "money well spent", "best purchase i have made this year",
    "i would buy it again", "it exceeded my expectations", "it works like a charm",
    "it never let me down", "i have no complaints", "a real bargain", "i am thrilled with it")
NEGATIVE_VERDICTS = (
    "i would not recommend it", "avoid it", "one star", "two stars", "a waste of money",
    "save your money", "worst purchase i have made this year", "i would never buy it again",
    "it did not meet my expectations", "i returned it after a week", "it fell apart in a month",
    "it stopped working after two weeks", "it let me down", "i regret buying it")
# Lexicon entries beyond the adjectives and verbs: words and phrases, verdicts included.
POSITIVE_PHRASES = (
    "recommend", "recommended", "five stars", "four stars", "worth every penny",
    "money well spent", "best", "buy it again", "exceeded my expectations",
    "meet my expectations", "works like a charm", "bargain", "thrilled", "loved", "enjoyed")
NEGATIVE_PHRASES = (
    "avoid", "one star", "two stars", "waste of money", "save your money", "worst",
    "returned it", "fell apart", "stopped working", "let me down", "regret", "complaints",
    "hated", "disappointed")
NEGATORS = frozenset(("not", "never", "no", "isn't", "wasn't", "don't", "didn't", "doesn't",
                      "can't", "won't", "wouldn't", "hardly"))
NEGATION_WINDOW = 3  # A negator flips a lexicon hit up to this many tokens after it.

PRODUCTS = ("headset", "blender", "laptop", "coffee maker", "backpack", "phone case",
            "desk lamp", "vacuum cleaner", "tent", "keyboard", "kettle", "camera",
            "sleeping bag", "office chair", "toaster", "speaker", "watch", "mattress",
            "jacket", "printer", "rice cooker", "monitor")
BRANDS = ("acme", "nordway", "brightco", "zentro", "kalix", "orbin", "veltra", "hallmoor")
ASPECTS = ("price", "design", "build quality", "packaging", "user guide", "customer service",
           "delivery", "size", "weight", "color", "finish", "handle", "cable", "display",
           "warranty", "setup", "battery", "sound")
INTENSIFIERS = ("", "", "", "very ", "really ", "truly ", "quite ", "extremely ",
                "incredibly ", "rather ", "pretty ")
NEUTRAL_ADJECTIVES = ("blue", "black", "small", "large", "round", "square", "plastic",
                      "metal", "standard", "light grey", "new", "white", "compact")
COLORS = ("red", "black", "white", "silver", "green", "navy")
PEOPLE = ("sister", "brother", "mother", "father", "wife", "husband", "son", "daughter",
          "roommate", "neighbour")
TIMES = ("last month", "in march", "a few weeks ago", "for christmas", "on sale",
         "last summer", "two months ago", "after reading some reviews")
ROOMS = ("kitchen", "bedroom", "garage", "living room", "study", "car")
NUMBERS = ("two", "three", "four", "five", "six", "ten", "twelve")
# Endings with no sentiment: the last bytes of a review should not give its label away
# (an untrained recurrent net's state mostly reflects them).
CLOSERS = ("thanks for reading.", "hope this helps someone.",
           "i will update this review in a month.", "it ships from the {brand} store.",
           "the {product} also comes in {color}.", "my {person} has the same one.",
           "that is all i have to say about the {product}.")
OPENERS = ("overall, ", "in short, ", "bottom line: ", "to sum up, ", "", "", "")
# Neutral lead-ins: length and texture that carry no sentiment.
LEAD_INS = ("to be fair, ", "as far as i can tell, ", "after a few days, ",
            "for what it is worth, ", "compared to my old one, ", "if you ask me, ",
            "from the first day, ", "as my {person} pointed out, ")


# Mood without a lexicon word: the writer's tone, shared by the whole review.
HAPPY_LEAD_INS = ("happily, ", "luckily, ", "to my delight, ", "thankfully, ", "as hoped, ")
SAD_LEAD_INS = ("sadly, ", "unfortunately, ", "to my dismay, ", "alas, ", "as feared, ")


@dataclasses.dataclass(frozen=True)
class Review:
  """One review: its text, its latent sentiment (1 positive, 0 negative) and two distractors."""
  text: str
  label: int
  product: str
  aspect: str


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def _adjectives(polarity):
  return POSITIVE_ADJECTIVES if polarity else NEGATIVE_ADJECTIVES


def _article(word):
  return "an" if word[0] in "aeiou" else "a"


def _opinion(rng, polarity, product, aspect):
  """A sentence of `polarity` with one or two lexicon hits."""
  adj, adj2 = _pick(rng, _adjectives(polarity)), _pick(rng, _adjectives(polarity))
  other, intens = _pick(rng, ASPECTS), _pick(rng, INTENSIFIERS)
  verb = _pick(rng, POSITIVE_VERBS if polarity else NEGATIVE_VERBS)
  return _pick(rng, (
      f"the {aspect} is {intens}{adj}.",
      f"this {product} is {intens}{adj}.",
      f"what {_article(adj)} {adj} {product}!",
      f"i {verb} the {aspect}.",
      f"honestly, the {aspect} is {adj} and the {other} is {adj2}.",
      f"{adj}, just {adj2}.",
      f"it feels {intens}{adj} in the hand.",
      f"it looks {adj} and the {aspect} feels {adj2}.",
      f"the {other} turned out to be {intens}{adj}.",
  ))


def _single_opinion(rng, polarity, product, aspect):
  """A sentence of `polarity` with exactly one lexicon hit (the minority voice of a review)."""
  adj, intens = _pick(rng, _adjectives(polarity)), _pick(rng, INTENSIFIERS)
  verb = _pick(rng, POSITIVE_VERBS if polarity else NEGATIVE_VERBS)
  return _pick(rng, (
      f"the {aspect} is {intens}{adj}.",
      f"i have to say the {aspect} is {adj}.",
      f"i {verb} the {aspect}.",
      f"the {product} looks {intens}{adj} though.",
  ))


def _negated(rng, polarity, aspect):
  """`polarity` said by negating a word of the opposite polarity ("not bad" is positive)."""
  opposite = _pick(rng, _adjectives(1 - polarity))
  return _pick(rng, (
      f"the {aspect} is not {opposite} at all.",
      f"the {aspect} isn't {opposite}.",
      f"i would not call it {opposite}.",
      f"the {aspect} was never {opposite}.",
      f"it is not {opposite}, not in the slightest.",
  ))


def _mixed(rng, polarity, product, aspect):
  """One hit of the opposite polarity, then one of `polarity`: net zero, but a hard example."""
  adj, minority = _pick(rng, _adjectives(polarity)), _pick(rng, _adjectives(1 - polarity))
  other = _pick(rng, ASPECTS)
  return _pick(rng, (
      f"the {other} is {minority}, but overall it is {adj}.",
      f"although the {other} is {minority}, the {aspect} is {adj}.",
      f"sure, the {other} is {minority}, yet the {product} is {adj}.",
  ))


def _verdict(rng, polarity):
  verdict = _pick(rng, POSITIVE_VERDICTS if polarity else NEGATIVE_VERDICTS)
  return f"{_pick(rng, OPENERS)}{verdict}{_pick(rng, ('.', '.', '!'))}"


def _filler(rng, product):
  """A sentence with no sentiment (some with a negator, to teach that negation alone is neutral)."""
  other = _pick(rng, ASPECTS)
  return _pick(rng, (
      f"i bought it {_pick(rng, TIMES)} for my {_pick(rng, PEOPLE)}.",
      f"it arrived in a {_pick(rng, COLORS)} box {_pick(rng, NUMBERS)} days after i ordered it.",
      f"i have been using it for {_pick(rng, NUMBERS)} weeks now.",
      f"the {other} is {_pick(rng, NEUTRAL_ADJECTIVES)}.",
      f"it comes in {_pick(rng, COLORS)} and {_pick(rng, COLORS)}.",
      f"i did not use the {other} much.",
      f"the {product} replaced an older one from another brand.",
      f"i mostly use it in the {_pick(rng, ROOMS)}.",
      f"the manual is {_pick(rng, NUMBERS)} pages long.",
      f"it doesn't come with a spare {other}.",
  ))


def _lead_in(rng, polarity):
  """A neutral lead-in, or one that carries the review's mood without a lexicon hit."""
  draw = rng.random()
  if draw < 0.25:
    return _pick(rng, LEAD_INS).format(person=_pick(rng, PEOPLE))
  if draw < 0.45:
    return _pick(rng, HAPPY_LEAD_INS if polarity else SAD_LEAD_INS)
  return ""


def _intro(rng, product, brand):
  return _pick(rng, (
      f"i bought this {product} {_pick(rng, TIMES)}.",
      f"this is my review of the {brand} {product}.",
      f"we got the {brand} {product} {_pick(rng, TIMES)}.",
      f"my {_pick(rng, PEOPLE)} picked the {brand} {product} for me.",
  ))


_KINDS = ("opinion", "negated", "filler", "mixed", "minority")
# Most sentences voice the writer's mood, as in real reviews: that is what makes knowing the
# sentiment pay off for next-byte prediction, the pressure under which the unit emerges.
_KIND_PROBABILITIES = (0.62, 0.12, 0.16, 0.05, 0.05)
_MAJORITY_KINDS = ("opinion", "negated")


def _body_kinds(rng, length):
  """Sentence kinds, at most as many minority ones as majority ones.

  Every majority sentence has a lexicon hit for the label, and so does the verdict
  added later, so the label's voice always outnumbers the minority's.
  """
  kinds = [str(k) for k in rng.choice(_KINDS, size=length, p=_KIND_PROBABILITIES)]
  while kinds.count("minority") > sum(k in _MAJORITY_KINDS for k in kinds):
    kinds[kinds.index("minority")] = "opinion"
  return kinds


def _review(rng, label):
  product, aspect, brand = _pick(rng, PRODUCTS), _pick(rng, ASPECTS), _pick(rng, BRANDS)
  writers = {
      "opinion": lambda: _opinion(rng, label, product, aspect),
      "negated": lambda: _negated(rng, label, aspect),
      "filler": lambda: _filler(rng, product),
      "mixed": lambda: _mixed(rng, label, product, aspect),
      "minority": lambda: _single_opinion(rng, 1 - label, product, aspect),
  }
  body = [_lead_in(rng, label if kind != "minority" else 1 - label) + writers[kind]()
          for kind in _body_kinds(rng, int(rng.integers(1, 7)))]
  body.insert(int(rng.integers(0, len(body) + 1)), _verdict(rng, label))
  sentences = [_intro(rng, product, brand)] + body
  if rng.random() < 0.3:
    sentences.append(_pick(rng, CLOSERS).format(brand=brand, product=product,
                                               color=_pick(rng, COLORS), person=_pick(rng, PEOPLE)))
  text = " ".join(s[0].upper() + s[1:] for s in sentences)
  return Review(text=text, label=label, product=product, aspect=aspect)


def generate_reviews(num_reviews, seed):
  """`num_reviews` reviews, half of each label (in shuffled order), the same for the same seed."""
  if num_reviews < 0:
    raise ValueError(f"num_reviews must be >= 0, got {num_reviews}")
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_reviews) % 2)
  return [_review(rng, int(label)) for label in labels]


def _lexicon():
  """Token tuple -> polarity (+1 or -1)."""
  entries = {(verb,): polarity for verb, polarity in VERB_LEXICON.items()}
  for phrases, polarity in ((POSITIVE_ADJECTIVES + POSITIVE_PHRASES, 1.0),
                            (NEGATIVE_ADJECTIVES + NEGATIVE_PHRASES, -1.0)):
    entries.update({tuple(phrase.split()): polarity for phrase in phrases})
  return entries


_LEXICON = _lexicon()
_LONGEST = max(len(key) for key in _LEXICON)
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,!?;:]")


def _negated_at(tokens, start):
  for token in reversed(tokens[max(0, start - NEGATION_WINDOW):start]):
    if not token[0].isalpha():
      return False
    if token in NEGATORS:
      return True
  return False


def sentiment_score(text):
  """Mean polarity of the lexicon hits in `text`, in [-1, 1]; 0.0 when nothing matches.

  Longest phrases match first; a negator up to NEGATION_WINDOW tokens before a hit,
  within the same clause, flips it. Bytes are decoded leniently, so model samples
  with broken UTF-8 score too.
  """
  if isinstance(text, bytes):
    text = text.decode("utf-8", errors="replace")
  if not isinstance(text, str):
    raise TypeError(f"sentiment_score takes str (or bytes), got {type(text).__name__}")
  tokens = _TOKEN.findall(text.lower())
  hits, i = [], 0
  while i < len(tokens):
    for length in range(min(_LONGEST, len(tokens) - i), 0, -1):
      polarity = _LEXICON.get(tuple(tokens[i:i + length]))
      if polarity is not None:
        hits.append(-polarity if _negated_at(tokens, i) else polarity)
        i += length
        break
    else:
      i += 1
  return float(np.mean(hits)) if hits else 0.0
