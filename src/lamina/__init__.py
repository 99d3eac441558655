"""Lamina: self-hosted serverless with the AWS Lambda API."""

__version__ = "0.1.0"
