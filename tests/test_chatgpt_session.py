"""The chat session: replies streamed token by token equal the reply kept in the history,
/reset, /system and /temp, bad input (empty, control sequences, too long, end of input), and
the real binary under a pseudo-terminal (slow)."""

import io
import os
import pty
import select
import subprocess
import sys
import time

import jax
import flax.linen as nn
import pytest

from lineage.data import chat
from lineage.milestones.chatgpt import dialogue, session
from lineage.milestones.gpt1 import pretrain
from lineage.models import gpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_and_params():
  cfg = gpt.GPTConfig(vocab_size=261, context=48, num_layers=1, num_heads=2, embed_dim=32,
                      mlp_dim=64, dropout=0.0)
  model = dialogue.chat_model(cfg)
  params = nn.unbox(pretrain.gpt_task(cfg).init_params(jax.random.PRNGKey(0)))
  return model, params


def make(model_and_params, **kw):
  model, params = model_and_params
  out = io.StringIO()
  return session.Session(model, params, out, max_new_tokens=8, **kw), out


def test_clean_strips_escape_sequences_and_control_characters():
  assert session.clean("\x1b[31mred\x1b[0m add\x1b[A milk\x07\r\n") == ("red add milk", 4)
  assert session.clean("\x1b]0;title\x07hi\tthere\x00") == ("hi there", 2)
  assert session.clean("plain text\n") == ("plain text", 0)


def test_a_reply_is_streamed_and_kept_in_the_history(model_and_params):
  s, out = make(model_and_params, system="Keep my list.")
  answer = s.reply("add milk")
  assert out.getvalue() == f"assistant: {answer}\n"
  assert s.turns() == [chat.Turn("system", "Keep my list."), chat.Turn("user", "add milk"),
                       chat.Turn("assistant", answer)]


def test_commands(model_and_params):
  s, out = make(model_and_params)
  s.handle("add milk")
  s.handle("/reset")
  assert s.history == [] and "[conversation reset]" in out.getvalue()
  s.handle("/system Be brief.")
  assert s.turns()[0] == chat.Turn("system", "Be brief.")
  s.handle("/system")
  assert s.turns() == []
  s.handle("/temp 0.7")
  assert s.temperature == 0.7
  for bad in ("/temp hot", "/temp -1"):
    s.handle(bad)
    assert "/temp needs a number >= 0" in out.getvalue().splitlines()[-1]
  assert s.temperature == 0.7
  s.handle("/frobnicate")
  assert "unknown command /frobnicate" in out.getvalue()


def test_bad_input_is_refused_and_the_chat_goes_on(model_and_params):
  s, out = make(model_and_params)
  s.handle("   \n")
  assert "[empty message ignored" in out.getvalue() and s.history == []
  s.handle("x" * 100)  # more than the 48-token context
  assert "[message not sent: the system prompt and the last message take" in out.getvalue()
  assert s.history == []
  s.handle("\x1b[A\x1b[B")  # arrow keys alone: nothing left to send
  assert "[removed 2 control character(s)" in out.getvalue() and s.history == []
  s.handle("add\x1b[D tea")
  assert s.history[0] == chat.Turn("user", "add tea")


def test_old_exchanges_are_dropped_to_fit_never_the_system_prompt(model_and_params):
  s, out = make(model_and_params, system="S")
  for i in range(4):
    s.handle(f"add item{i}")
  assert "oldest exchange(s) no longer fit the context and were dropped" in out.getvalue()
  assert s.turns()[0] == chat.Turn("system", "S") and s.turns()[-2].content == "add item3"


def test_run_ends_cleanly_at_end_of_input(model_and_params):
  s, out = make(model_and_params)
  turns = s.run(io.StringIO("add milk\n/reset\nadd tea\n"), echo=True)
  text = out.getvalue()
  assert text.count("assistant: ") == 2 and "you: /reset\n[conversation reset]" in text
  assert text.rstrip().endswith("[end of input: goodbye]")
  assert [t.content for t in turns][0] == "add tea"


def test_chat_mode_refuses_a_missing_prompt_file_or_model(tmp_path):
  from configs import chatgpt as chatgpt_config
  from lineage.milestones import chatgpt
  cfg = chatgpt_config.get_config()
  with pytest.raises(ValueError, match="--mode=chat needs the model"):
    chatgpt.run_chat(cfg)
  cfg.init_from = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="--prompt_file=.*does not exist"):
    chatgpt.run_chat(cfg, prompt_file=str(tmp_path / "missing.txt"))


def _read_until(fd, needle, timeout):
  data, end = b"", time.time() + timeout
  while needle.encode() not in data:
    if time.time() > end:
      raise AssertionError(f"no {needle!r} within {timeout} s; the terminal showed {data!r}")
    ready, _, _ = select.select([fd], [], [], 1.0)
    if ready:
      try:
        data += os.read(fd, 4096)
      except OSError:
        break
  return data.decode("utf-8", "replace")


@pytest.mark.slow
def test_chat_binary_under_a_pseudo_terminal(tmp_path):
  """Pre-trains a model for two steps, then talks to it through a pty: a prompt, a streamed
  reply, /reset, a control sequence, Ctrl-D."""
  run = tmp_path / "run"
  # One CPU device, as the binary runs outside the tests (conftest asks for eight).
  env = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": ""}
  base = [sys.executable, "-m", "experiments.chatgpt", "--config=configs/chatgpt.py:tiny",
          "--config.train.steps=2", "--config.train.batch_size=2",
          "--config.pretrain.corpus_tokens=20000", "--config.probes.num=4"]
  subprocess.run(base + [f"--workdir={run}", "--mode=pretrain"], check=True, cwd=ROOT,
                 env=env, capture_output=True)
  script = tmp_path / "conversation.txt"
  script.write_text("add milk\n/temp 0.5\n\nadd tea\n")
  scripted = subprocess.run(base + ["--mode=chat", f"--config.init_from={run}",
                                    f"--prompt_file={script}", "--config.chat.max_new_tokens=8"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
  assert scripted.returncode == 0, scripted.stderr[-2000:]
  shown = scripted.stdout
  assert shown.count("assistant: ") == 2 and "you: /temp 0.5\n[temperature 0.5]" in shown
  assert "[empty message ignored" in shown and "[end of input: goodbye]" in shown
  leader, follower = pty.openpty()
  proc = subprocess.Popen(base + ["--mode=chat", f"--config.init_from={run}",
                                  "--config.chat.max_new_tokens=8"],
                          stdin=follower, stdout=follower, stderr=subprocess.DEVNULL,
                          cwd=ROOT, env=env)
  os.close(follower)
  try:
    _read_until(leader, "you: ", 120)
    os.write(leader, b"add milk\n")
    reply = _read_until(leader, "you: ", 120)
    assert "assistant: " in reply
    os.write(leader, b"/reset\n")
    assert "[conversation reset]" in _read_until(leader, "you: ", 30)
    os.write(leader, b"\x1b[31madd tea\n")
    shown = _read_until(leader, "you: ", 60)
    assert "[removed 1 control character(s)" in shown and "assistant: " in shown
    os.write(leader, b"\x04")  # Ctrl-D
    assert "[end of input: goodbye]" in _read_until(leader, "goodbye]", 30)
    assert proc.wait(30) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
    os.close(leader)
