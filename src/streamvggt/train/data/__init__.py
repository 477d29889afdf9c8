"""Training data: multi-view clip datasets (CUT3R layouts, synthetic scenes), sampling, transforms, mixes."""
