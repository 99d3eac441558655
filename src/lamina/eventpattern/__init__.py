"""EventBridge event patterns, compiled once and matched many times (event source mapping filters now; EventBridge
rules later). Leaf: imports nothing else of Lamina."""

from lamina.eventpattern.matcher import Pattern, PatternError, compile_pattern

__all__ = ["Pattern", "PatternError", "compile_pattern"]
