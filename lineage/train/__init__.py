"""Training: pure steps, optimiser, sharding, checkpoints and the loop that drives them."""
