"""Training: the trainer, what each stage trains, and the generator's training corruption."""
