"""Self-contained demo: procedural shapes with known factors and a small beta-TCVAE."""
