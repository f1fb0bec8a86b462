"""tsnejax: t-SNE in JAX for optimizer experimentation."""
