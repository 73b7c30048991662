"""lineage: the road from recurrent language models to ChatGPT, in JAX."""
