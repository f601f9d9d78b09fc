"""Adapters of the design service: SQL repositories, the blob store, the geometry engine.

Nothing is re-exported here: the schema (services.shared.tables_all) imports the table
modules of this package, and must not pull in the geometry engine (CadQuery) with them.
"""
