"""Synthetic product reviews whose sentiment is a latent variable, and the lexicon that scores it.

The sentiment neuron (Radford et al. 2017) appears because predicting the next
byte of a review is easier once the model knows how the writer feels: the mood
persists from sentence to sentence. A tiny model on a CPU budget only finds that
if it pays off often, so these reviews voice the mood in nearly every sentence.
Each review draws a star rating first (1 or 2 stars: negative; 4 or 5: positive),
then writes opinion words of that rating's strength ("superb" for five stars,
"lovely" for four, "dull" for two, "dreadful" for one) in passages of opinion
sentences, each passage closed by a neutral aside ("i mostly use it in the garage.").

No single token gives the label away: each opinion word is one of 48, and the
mood mixes with negations of the opposite polarity ("the price is not terrible
at all"), among distractors independent of the label (the product, named in
some asides; the aspect; length from 3 to 21 sentences; neutral asides;
negations with no sentiment). Every review ends with an aside, so the label is
not in the last bytes: a model must carry it through the review.

`sentiment_score` reads text with the same lexicon and negation rule the
generator writes with, so it can score any text, model samples included.
"""

import dataclasses
import re

import numpy as np

# Opinion words by the strength of the rating they voice: a review uses its own rating's
# words most and the other rating of the same polarity sometimes; the opposite polarity only
# appears negated. Positive adjectives start with one set of letters (a b c e f g l n o p s),
# negative ones with another (d h m r t u w): a tiny byte model can then note the mood from one
# byte, and the unit emerges within a CPU budget (it still has to learn which letters, where,
# and that the mood persists). The price: random units that integrate letters over a whole
# review already separate the labels a little (about 0.6, not 0.5, at initialisation). Word
# lists whose letters match across polarities remove that, but then the tiny model never
# started to use the mood.
ADJECTIVES = {
    5: ("amazing", "brilliant", "excellent", "fantastic", "flawless", "outstanding", "perfect",
        "superb", "stunning", "splendid", "exceptional", "fabulous"),
    4: ("good", "great", "lovely", "nice", "neat", "solid", "sturdy", "pleasant", "fine",
        "elegant", "charming", "capable"),
    2: ("mediocre", "dull", "weak", "tacky", "tinny", "messy", "dated", "underwhelming",
        "disappointing", "middling", "rough", "dodgy"),
    1: ("terrible", "horrible", "dreadful", "useless", "ugly", "miserable", "defective",
        "dismal", "wretched", "hopeless", "horrid", "worthless"),
}
RATINGS = {1: (4, 5), 0: (1, 2)}  # label -> the star ratings that voice it
SAME_RATING = 0.75  # an opinion word of the review's own rating, else of its sibling rating
POSITIVE_ADJECTIVES = ADJECTIVES[5] + ADJECTIVES[4]
NEGATIVE_ADJECTIVES = ADJECTIVES[2] + ADJECTIVES[1]
# Verbs the generator does not write, in the lexicon so that model samples using them score.
VERB_LEXICON = {**dict.fromkeys(("adore", "love", "enjoy", "appreciate", "value"), 1.0),
                **dict.fromkeys(("dislike", "resent", "mistrust", "hate", "detest", "despise"),
                                -1.0)}
# Lexicon entries beyond the adjectives and verbs, which the generator does not write either:
# review verdicts, so that samples and other text using them score.
POSITIVE_PHRASES = (
    "recommend", "recommended", "five stars", "four stars", "worth every penny",
    "money well spent", "best", "exceeded my expectations", "meet my expectations",
    "works like a charm", "bargain", "thrilled")
NEGATIVE_PHRASES = (
    "avoid", "one star", "two stars", "waste of money", "save your money", "worst",
    "returned it", "fell apart", "let me down", "regret", "complaints")
NEGATORS = frozenset(("not", "never", "no", "isn't", "wasn't", "don't", "didn't", "doesn't",
                      "can't", "won't", "wouldn't", "hardly"))
NEGATION_WINDOW = 3  # A negator flips a lexicon hit up to this many tokens after it.

PRODUCTS = ("headset", "blender", "laptop", "coffee maker", "backpack", "phone case",
            "desk lamp", "vacuum cleaner", "tent", "keyboard", "kettle", "camera",
            "sleeping bag", "office chair", "toaster", "speaker", "watch", "mattress",
            "jacket", "printer", "rice cooker", "monitor")
ASPECTS = ("price", "design", "build quality", "packaging", "user guide", "customer service",
           "delivery", "size", "weight", "color", "finish", "handle", "cable", "display",
           "warranty", "setup", "battery", "sound")
NEUTRAL_ADJECTIVES = ("blue", "black", "small", "large", "round", "square", "plastic",
                      "metal", "standard", "light grey", "new", "white", "compact")
COLORS = ("red", "black", "white", "silver", "green", "navy")
PEOPLE = ("sister", "brother", "mother", "father", "wife", "husband", "son", "daughter",
          "roommate", "neighbour")
TIMES = ("last month", "in march", "a few weeks ago", "for christmas", "on sale",
         "last summer", "two months ago", "after reading some reviews")
ROOMS = ("kitchen", "bedroom", "garage", "living room", "study", "car")
NUMBERS = ("two", "three", "four", "five", "six", "ten", "twelve")


@dataclasses.dataclass(frozen=True)
class Review:
  """One review: its text, its latent sentiment (1 positive, 0 negative), the star rating
  that voiced it, and two distractors."""
  text: str
  label: int
  rating: int
  product: str
  aspect: str


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def _polarity(rating):
  return int(rating > 3)


def _opposite(rating):
  """The rating of the same strength and the other polarity (5 <-> 1, 4 <-> 2)."""
  return 6 - rating


def _word(rng, rating):
  """A word of `rating`'s polarity: of that rating itself with probability SAME_RATING."""
  if rng.random() >= SAME_RATING:
    rating = next(r for r in RATINGS[_polarity(rating)] if r != rating)
  return _pick(rng, ADJECTIVES[rating])


def _opinion(rng, rating, aspect):
  """A short sentence of `rating`'s mood, its opinion word always after "is "."""
  adj = _word(rng, rating)
  return _pick(rng, (f"the {aspect} is {adj}.", f"the {_pick(rng, ASPECTS)} is {adj}."))


def _negated(rng, rating, aspect):
  """`rating`'s polarity said by negating a word of the opposite one ("not bad" is positive)."""
  opposite = _word(rng, _opposite(rating))
  return _pick(rng, (
      f"the {aspect} is not {opposite} at all.",
      f"the {aspect} isn't {opposite}.",
      f"i would not call it {opposite}.",
      f"the {aspect} was never {opposite}.",
      f"it is not {opposite}, not in the slightest.",
  ))


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


# A review is 1 to 3 passages; each passage is a run of opinion sentences (an occasional one
# negated) and ends with a neutral aside. So the mood pays off sentence after sentence (the
# pressure under which the unit emerges on a CPU budget: sparser mood, as in 1.x and 2.x
# reviews, left the language model ignoring it), the last bytes of every review are neutral
# (an untrained network's final state mostly reflects them), and an aside does not tell the
# model the review is over, so a trained model keeps the mood through it (a closer that always
# ended reviews taught it to drop the mood there, and the probe reads the state after it).
PASSAGES = (1, 3)
OPINIONS_PER_PASSAGE = (2, 6)
NEGATED = 0.05  # the chance that an opinion sentence is said by negating the opposite polarity


def _passage(rng, rating, product, aspect):
  sentences = []
  for _ in range(int(rng.integers(OPINIONS_PER_PASSAGE[0], OPINIONS_PER_PASSAGE[1] + 1))):
    if rng.random() < NEGATED:
      sentences.append(_negated(rng, rating, aspect))
    else:
      sentences.append(_opinion(rng, rating, aspect))
  return sentences + [_filler(rng, product)]


def _review(rng, label):
  rating = _pick(rng, RATINGS[label])
  product, aspect = _pick(rng, PRODUCTS), _pick(rng, ASPECTS)
  sentences = []
  for _ in range(int(rng.integers(PASSAGES[0], PASSAGES[1] + 1))):
    sentences += _passage(rng, rating, product, aspect)
  text = " ".join(s[0].upper() + s[1:] for s in sentences)
  return Review(text=text, label=label, rating=rating, product=product, aspect=aspect)


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
