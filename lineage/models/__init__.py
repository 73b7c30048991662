"""Model families of the lineage as pure linen modules."""
