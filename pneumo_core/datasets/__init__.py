"""The Kermany folder layout, without TensorFlow: listing films, patient ids, patient-grouped splits and the
evaluation protocols (which films train, validate and test)."""
