"""The paper's data sets: the synthetic task-relatedness generator and UCI Census-Income."""
