"""Learning from human feedback, generic over prompts and responses as token arrays.

  layout.py  prompts and responses in one row (left-padded prompt, right-padded response, a
             response mask), token log-probabilities and entropies
  sft.py     supervised fine-tuning: the LM loss on the response only, packing
  reward.py  the reward model (a GPT with a scalar head at the final token), the K-way
             pairwise loss, held-out pair accuracy, the demonstrations-score-0 bias
  kl.py      KL estimators (k1, k2, k3) and the fixed and adaptive KL coefficients
  gae.py     generalised advantage estimation over masked actions, whitening
  ppo.py     PPO as parameter-dependent data for the loop: rollouts, the KL-penalised
             reward, the clipped policy and value losses, PPO-ptx
  dpo.py     direct preference optimisation against the frozen reference
Nothing assumes a single turn: a dialogue is a row whose response mask covers every
assistant turn.
"""
