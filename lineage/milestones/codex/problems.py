"""The embedded synthetic docstring-to-function problems: HumanEval's format, generated from
templates, small enough for a tiny model to learn on a CPU in a minute or two.

A problem asks for a one-line function from its docstring under a name that gives nothing
away; its tests call it on four inputs. Each template is a family (add a constant, keep the
elements above a constant, repeat a string...) with a range of constants. Half the templates
state the expression in the docstring ("Return x + 17."), so that copying it is the answer:
a tiny model learns that within the tour's minute of training and gets those right at low
temperature. The others say it in words ("Return x modulo 6.", "Return the first 3
characters of s."); the tiny model learns their shape but not which constant the words ask
for, so it guesses among the constants it has seen, and only sampling at higher temperatures
tries enough of them. That mix, easy problems that high temperatures spoil and hard ones that
only high temperatures solve, is what makes the best temperature rise with k, as in the
paper's Figure 5. Evaluation prompts never appear in training (their names differ).
"""

import dataclasses
from typing import Callable

import numpy as np

NAMES_A = ("calc", "compute", "get", "make", "find", "apply", "build", "eval")
NAMES_B = ("value", "result", "answer", "output", "number", "item", "thing", "score")
INT_INPUTS, LIST_INPUTS = (0, 3, 8, 13), ([1, 5, 2], [7, 7, 0, 3], [4], [9, 1, 6, 2, 8])
STRING_INPUTS = ("abc", "hello", "xy", "python code")


@dataclasses.dataclass(frozen=True)
class Template:
  """A family of problems: arg is the parameter's name; doc and body take the constant c,
  drawn from `constants`."""
  arg: str
  doc: str
  body: str
  fn: Callable  # (argument, c) -> the right answer, to write the tests
  constants: range = range(2, 30)

  def inputs(self):
    return {"x": INT_INPUTS, "xs": LIST_INPUTS, "s": STRING_INPUTS}[self.arg]


TEMPLATES = (
    Template("x", "Return x + {c}.", "x + {c}", lambda x, c: x + c),
    Template("x", "Return x - {c}.", "x - {c}", lambda x, c: x - c),
    Template("x", "Return x * {c}.", "x * {c}", lambda x, c: x * c),
    Template("x", "Return x modulo {c}.", "x % {c}", lambda x, c: x % c, range(2, 10)),
    Template("x", "Return x * x + {c}.", "x * x + {c}", lambda x, c: x * x + c),
    Template("x", "Return True if x is greater than {c}.", "x > {c}", lambda x, c: x > c,
             range(1, 15)),
    Template("x", "Return True if x is divisible by {c}.", "x % {c} == 0",
             lambda x, c: x % c == 0, range(2, 10)),
    Template("xs", "Return sum(xs) + {c}.", "sum(xs) + {c}", lambda xs, c: sum(xs) + c),
    Template("xs", "Return max(xs) * {c}.", "max(xs) * {c}",
             lambda xs, c: max(xs) * c),
    Template("xs", "Return how many elements of xs equal {c}.", "xs.count({c})",
             lambda xs, c: xs.count(c), range(0, 10)),
    Template("xs", "Return the elements of xs greater than {c}.", "[v for v in xs if v > {c}]",
             lambda xs, c: [v for v in xs if v > c], range(0, 10)),
    Template("xs", "Return [v + {c} for v in xs].", "[v + {c} for v in xs]",
             lambda xs, c: [v + c for v in xs]),
    Template("s", "Return s repeated {c} times.", "s * {c}", lambda s, c: s * c, range(2, 6)),
    Template("s", "Return the first {c} characters of s.", "s[:{c}]", lambda s, c: s[:c],
             range(1, 10)),
    Template("s", "Return s without its first {c} characters.", "s[{c}:]", lambda s, c: s[c:],
             range(1, 10)),
)


def skills():
  """Every (template index, constant) pair."""
  return [(t, c) for t, template in enumerate(TEMPLATES) for c in template.constants]


def problem(task_id, name, template_index, c):
  """One problem in HumanEval's format (task_id, prompt, canonical_solution, test,
  entry_point)."""
  t = TEMPLATES[template_index]
  prompt = f'def {name}({t.arg}):\n    """{t.doc.format(c=c)}\n    """\n'
  asserts = "".join(f"    assert candidate({v!r}) == {t.fn(v, c)!r}\n" for v in t.inputs())
  return {"task_id": task_id, "prompt": prompt, "canonical_solution":
          f"    return {t.body.format(c=c)}\n", "test": f"def check(candidate):\n{asserts}",
          "entry_point": name}


def _name(rng):
  return f"{NAMES_A[rng.integers(len(NAMES_A))]}_{NAMES_B[rng.integers(len(NAMES_B))]}"


def eval_problems(num_problems=16, num_train=4000, seed=0):
  """`num_problems` problems whose prompts are none of the `num_train` training texts' (their
  function names differ), their skills drawn as training draws them, at most two per
  template."""
  if num_problems > 2 * len(TEMPLATES):
    raise ValueError(f"at most {2 * len(TEMPLATES)} synthetic problems, not {num_problems}")
  seen = {text.partition("    return")[0] for text in training_texts(num_train, seed)}
  rng = np.random.default_rng(seed + 1)
  found, per_template = [], {}
  while len(found) < num_problems:
    t = int(rng.integers(len(TEMPLATES)))
    c = int(rng.choice(TEMPLATES[t].constants))
    p = problem(f"Synthetic/{len(found)}", _name(rng), t, c)
    if p["prompt"] in seen or per_template.get(t, 0) >= 2:
      continue
    per_template[t] = per_template.get(t, 0) + 1
    found.append(p)
  return found


def training_texts(num, seed=0):
  """`num` solved problems (prompt + canonical solution), drawn from the seed."""
  rng = np.random.default_rng(seed + 2)
  texts = []
  for i in range(num):
    t = int(rng.integers(len(TEMPLATES)))
    c = int(rng.choice(TEMPLATES[t].constants))
    p = problem(f"train/{i}", _name(rng), t, c)
    texts.append(p["prompt"] + p["canonical_solution"])
  return texts


def training_corpus(num, seed=0):
  """The training texts as one file's contents, problems separated by blank lines as in a
  module, so that a completion ends where the next `def` begins (a Codex stop sequence)."""
  return "\n\n".join(training_texts(num, seed)) + "\n"
