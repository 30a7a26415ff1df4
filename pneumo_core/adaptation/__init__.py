"""Label-free adaptation to a site: class-prior estimation and correction (EM) and the model-side methods of the
pre-registered site-adaptation study (docs/preregistrations/site_adaptation.md)."""
