"""Durable face collections: SQLite store, vector-index sync, Rekognition collection operations."""
