"""xmt: cross-modal transfer in Kosmos-style multimodal LLMs."""

__version__ = "0.1.0"
