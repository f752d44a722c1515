"""I/O at the edges: raw FITS reading, geometry, discovery and detector naming."""
