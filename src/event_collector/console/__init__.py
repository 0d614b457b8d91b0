"""The operator console (issue 14): server-rendered pages over the service layer."""
