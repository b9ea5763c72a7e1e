"""Pieces shared by the adversarial methods: losses, regularisers (jaxgen.gan.losses)."""
