"""The prediction heads: camera (iterative refinement), dense DPT (depth, points) and tracks."""
