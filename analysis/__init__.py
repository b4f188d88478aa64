"""Studies that read run directories (and grid results) and write tidy CSV tables and figures."""
