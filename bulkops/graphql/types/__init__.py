"""GraphQL object types, one module per area."""
