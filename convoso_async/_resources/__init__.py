"""API resources: each describes its endpoints, checks caller input, returns models."""
