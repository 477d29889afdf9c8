"""The frame loop from a source to the outputs: options checked once, the reconstructor and the run."""
