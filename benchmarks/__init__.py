"""mvit-bench: the format x precision matrix of one or more checkpoints, with latency, size, accuracy,
agreement with the float model, and where int8 error comes from."""
