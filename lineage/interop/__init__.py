"""Checkpoint import and export: Hugging Face GPT-2 (hf_gpt2)."""
