"""Infrastructure both services use: config, identity and authorization, errors and their gRPC
statuses, database and migrations, audit log, outbox, relay, Kafka consumers, server assembly.
Import the module you need (services.shared.authz, services.shared.outbox, ...)."""
