"""Training methods, one file per family. Each implements `jaxgen.methods.base.Method`."""
