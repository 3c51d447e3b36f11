"""Training pieces below the Runner: checkpoints (and, as they move here, the module, optimizers, strategies)."""
