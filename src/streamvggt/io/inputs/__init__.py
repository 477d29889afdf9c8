"""Reading inputs: image folders, videos, cameras and streams, and preprocessing frames for the model."""
