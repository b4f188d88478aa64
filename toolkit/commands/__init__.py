"""The command layer's orchestration (the top floor with `toolkit.cli`): what needs the library, the
analysis studies and the paper figures together, such as `xmt reproduce`."""
