"""The commands an operator runs against a running service: the job commands, clients of
the API like any other (GraphQL over HTTP and websockets, with a bearer token), and the
token commands, which work on the database directly."""
