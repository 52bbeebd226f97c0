"""factory: turn one narrow language task into a small, local, fine-tuned specialist model."""
