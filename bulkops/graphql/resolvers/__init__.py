"""Thin resolvers: check the input, call a service, shape the payload."""
