"""Reference and main model backends (HF encoder classifier, frozen encoder + head)."""
