"""Worked solutions to lab 12's exercises (checked by tests/test_exercises.py)."""

import statistics

from common.cases import ALIGNMENT


def exercise_1(size: int, precision: str) -> int:
    multiple = ALIGNMENT[precision]
    return -(-size // multiple) * multiple     # ceiling division, then back to elements


def exercise_2(batches: list[int]) -> tuple[int, int, int]:
    ordered = sorted(batches)
    return ordered[0], statistics.median_low(ordered), ordered[-1]


def exercise_3(graph) -> list[tuple[str, str]]:
    pairs = []
    for node in graph.nodes:
        if node.op_type != "Cast":
            continue
        consumer = graph.only_consumer(node.output[0])
        if consumer is not None and consumer.op_type == "Cast":
            pairs.append((node.name, consumer.name))
    return pairs
