"""The paper's reproductions: the batched multi-run engine (:mod:`.multirun`), the synthetic
study (:mod:`.synthetic`) and the Census-Income tables (:mod:`.census`)."""
