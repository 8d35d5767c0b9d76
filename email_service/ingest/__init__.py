"""One fetched message to one stream entry: parse, map to emailData, apply caps."""
