"""What the REST API reads and writes, as Pydantic models: kept apart from the catalog's tables,
so that a column can change without changing the API, and nothing leaks by accident (a stored
selfie, a key's hash, a template)."""
