"""The ground floor every package may import: errors, paths, network namespaces, the service model."""
