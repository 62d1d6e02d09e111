"""The stages that turn a config into outputs: the reference run and the representations
(:mod:`~datadiet.pipeline.stages`), the study (:mod:`~datadiet.pipeline.study`) and the demo config."""
