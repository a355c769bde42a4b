"""One listener from one annotated song: the adapted model, its LoRA adapter or folder, and the service the CLI and demo call."""
