"""Local or Ray execution of chunked maps, with the same results bit for bit (see docs/distributed.md)."""
