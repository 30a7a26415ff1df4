"""Archive-scale scoring: folders, lists or a PACS to Parquet written as it goes, resumable, locally or on Ray."""
