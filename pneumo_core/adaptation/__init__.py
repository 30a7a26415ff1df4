"""Label-free adaptation to a site: class-prior estimation and correction (EM), the methods and protocol of the
pre-registered site-adaptation study (models/experiments/site_adaptation_preregistration.md: anchored AdaBN,
CORAL, two-fold cross-fitting) and the opt-in action it allowed (adapt.py). TensorFlow only inside functions."""
