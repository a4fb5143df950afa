"""rich renderables for vmig's outputs (build, never print)."""
