"""hpo: measured, reproducible Optuna studies of how to train a Keras model well."""

__version__ = "0.1.0"
