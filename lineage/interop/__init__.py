"""Checkpoint import and export: Hugging Face GPT-2 (hf_gpt2) and GPT-1 (hf_gpt1)."""
