"""Developer tools: the local S3 endpoint and the demo runner. Not pipeline stages."""
