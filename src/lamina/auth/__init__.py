"""Who is calling: SigV4 verification of AWS-API requests (sigv4.py) against configured and issued keys (keys.py),
errors in each API's shape (errors.py), and resource-policy evaluation (policy.py)."""
