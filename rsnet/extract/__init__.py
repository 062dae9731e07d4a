"""Video files to the two-stream I3D snippet features the model trains on (docs/extract.md)."""
