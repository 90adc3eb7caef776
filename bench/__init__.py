"""Benchmarks: ``python -m bench SCENARIO`` drives a real ``ordnung serve`` over HTTP.

They print figures; they are never timed unit tests. See BENCHMARKS.md.
"""
