"""Chapter 5: pretraining on unlabeled data (loss, training loop, sampling, checkpoints, GPT-2 weights)."""
