"""Label-free adaptation to a site: class-prior estimation and correction (EM) and the model-side methods of the
pre-registered site-adaptation study (models/experiments/site_adaptation_preregistration.md): AdaBN anchored to
the training films, CORAL on pooled features, and the cross-fitting protocol. TensorFlow only inside functions."""
