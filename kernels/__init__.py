"""Attention kernels: Pallas implementations beside their plain-jnp references."""
