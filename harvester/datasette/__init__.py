"""The archive in Datasette: the plugin and the shipped metadata."""
