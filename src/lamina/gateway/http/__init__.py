"""The HTTP front door: the hot path, function URLs, HTTP apps and the MicroVM endpoint proxy."""
