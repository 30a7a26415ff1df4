"""A PACS as a film source over DICOMweb: settings, search/retrieve/store, the Secondary Capture stored back."""
