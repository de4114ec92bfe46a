"""Small pure helpers shared by the user-facing pools (db, http) and the store: URL
redaction, HOST:PORT parsing, pool statistics."""
