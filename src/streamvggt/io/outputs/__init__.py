"""Writing (and reading back) reconstruction outputs: PLY, GLB, COLMAP, transforms.json, TUM, RGB-D, depth."""
