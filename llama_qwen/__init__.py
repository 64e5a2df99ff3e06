"""Bonus lessons beyond the book: from GPT-2 to today's open models (Llama 3.2, Qwen3 dense and MoE)."""
