"""Secure contribution: node keys on disk (:mod:`.keys`) and sealed, signed bundles
(:mod:`.bundle`: Arrow IPC -> zstd -> HPKE to the platform, Ed25519-signed manifest)."""
