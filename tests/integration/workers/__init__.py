"""Worker scripts started as real processes by the integration tests."""
