"""One module per distillation strategy; `recdistill.distill.registry` discovers them."""
