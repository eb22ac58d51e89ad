"""Data: readers, encoders, column tables, the synthetic generator, the census loader."""
