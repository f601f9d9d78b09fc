"""cofab's gRPC services: design, supply, and what both share (services.shared)."""
