"""Reading films safely: raster and DICOM decoding, window/level, size and bomb limits."""
