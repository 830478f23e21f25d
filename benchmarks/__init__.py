"""Benchmarks of hpo's trial loop against plain Keras, the machine's floor, pruning and memory."""
