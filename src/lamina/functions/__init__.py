"""The function core: registry, names, versions/aliases, AwsError and the one invoke path every front end calls."""
