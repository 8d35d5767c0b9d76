"""A provider's OAuth credentials: which client it uses, and its access token, refreshed once."""
