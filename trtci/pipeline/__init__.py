"""The stages of a run, in order: plan -> data -> prepare -> (backends) -> validate -> measure -> compare -> store."""
