"""Knowledge extraction from a teacher and the distillation strategies that use it."""
