"""Converters from other checkpoint formats into xmt run directories."""
