"""jaxgen.diffusion."""
