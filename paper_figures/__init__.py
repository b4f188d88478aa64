"""The paper's tables and figures, rebuilt from stored results (grid results, analysis CSVs).

One module per artifact; each has `build(ctx) -> list[Path]` and reads stored results only: none
trains or loads a model. `xmt paper build` runs them all.
"""
