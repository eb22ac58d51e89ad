"""Data: readers and writers of tables, the encoder that turns columns into tensors, column
tables, downloads, and the data sets of the paper's experiments (:mod:`.datasets`)."""
