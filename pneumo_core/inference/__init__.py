"""From a decoded film to a result: model input, backends (Keras, LiteRT), Grad-CAM, the OOD guard, the pipeline."""
