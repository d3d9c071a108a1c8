"""The security officer's workspace: audit search, timelines, exports and alerts."""
