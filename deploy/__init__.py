"""Deployment tooling for cofab (local processes and Kubernetes manifests)."""
