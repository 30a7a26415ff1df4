"""Making models (needs TensorFlow): data listing and patient splits, builders, trainer, ensembles, protocols,
LiteRT export."""
