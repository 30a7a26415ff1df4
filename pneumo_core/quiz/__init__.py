"""The reader quiz: rules, storage, reader statistics, the CLI's reports."""
