"""The stages that turn a config into outputs: the reference run (:mod:`~datadiet.pipeline.reference`),
the representations (:mod:`~datadiet.pipeline.represent`), the study (:mod:`~datadiet.pipeline.study`) and
the demo config."""
