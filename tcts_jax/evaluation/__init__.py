"""The eval job as a package: what to generate (grid), generating it sharded over devices (generation) into
resumable shards (shards), scoring it with evaluators found by name (evaluators/), statistics (stats),
reports (report) and the record of how a result was made (manifest); job.py wires them together.
`tokenizer.py` and `selector.py` evaluate one trained part on held-out data."""
