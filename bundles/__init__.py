"""Building, signing, verifying and installing PGP-signed bundles for air-gapped sites."""
