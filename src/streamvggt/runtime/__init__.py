"""How a model runs on this machine: device, precision, compilation and CPU allocator settings."""
