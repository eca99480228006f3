"""What users drive: the command line and the server (REST API and WebUI)."""
