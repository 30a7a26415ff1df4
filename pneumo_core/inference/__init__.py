"""From a decoded film to a result: model input, model files, backends, Grad-CAM, the OOD guard, the pipeline."""
