"""Chapter 3: coding attention mechanisms."""
