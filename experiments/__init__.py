"""absl launchers: thin wrappers that parse flags and call the library."""
