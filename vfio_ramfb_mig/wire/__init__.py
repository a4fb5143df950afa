"""construct schemas of the migration stream containers (no file I/O, no model, no rich)."""
