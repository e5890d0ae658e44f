"""Lab 12 (your model) exercises: the alignment rule as arithmetic, a profile from served batches, and
a new advisor check written by the learner."""

from __future__ import annotations

from pathlib import Path

from onnx import TensorProto, helper

from common.advise.graph import ModelGraph
from common.exercises import Exercise


def _check_padding(fn) -> str | None:
    cases = ((4095, "fp16", 4096), (4096, "fp16", 4096), (1010, "fp8", 1024), (65, "tf32", 68), (20, "int8", 32))
    for size, precision, want in cases:
        got = fn(size, precision)
        if got is None:
            raise NotImplementedError
        if got != want:
            return (f"{size} in {precision}: expected {want}, got {got}. Round up to the next multiple of the "
                    "precision's alignment (common.cases.ALIGNMENT: TF32 4, FP16/BF16 8, INT8/FP8 16).")
    return None


def _check_profile(fn) -> str | None:
    cases = (([1, 8, 32], (1, 8, 32)), ([16], (16, 16, 16)), ([64, 1, 4, 8], (1, 4, 64)), ([2, 2, 2, 16], (2, 2, 16)))
    for batches, want in cases:
        got = fn(list(batches))
        if got is None:
            raise NotImplementedError
        if tuple(got) != want:
            return (f"batches {batches}: expected (min, opt, max) = {want}, got {tuple(got)}. opt is the "
                    "middle batch served (the lower of the two middle ones for an even count).")
    return None


def _cast_graph(pairs: int, clean_casts: int) -> ModelGraph:
    """A chain of Relus with `pairs` Cast->Cast round trips and `clean_casts` lone Casts planted."""
    nodes, last = [], "x"
    for i in range(pairs):
        nodes += [helper.make_node("Cast", [last], [f"h{i}"], to=TensorProto.FLOAT16, name=f"down{i}"),
                  helper.make_node("Cast", [f"h{i}"], [f"f{i}"], to=TensorProto.FLOAT, name=f"up{i}"),
                  helper.make_node("Relu", [f"f{i}"], [f"r{i}"], name=f"relu{i}")]
        last = f"r{i}"
    for i in range(clean_casts):
        nodes += [helper.make_node("Cast", [last], [f"c{i}"], to=TensorProto.FLOAT, name=f"lone{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"cr{i}"], name=f"crelu{i}")]
        last = f"cr{i}"
    graph = helper.make_graph(nodes, "casts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [2, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = ModelGraph(path=Path("casts.onnx"), model=model)   # built in memory, never read from disk
    for node in model.graph.node:
        for out in node.output:
            result.producer[out] = node
        for name in node.input:
            result.consumers[name].append(node)
    return result


def _check_cast_pairs(fn) -> str | None:
    for pairs, lone in ((2, 1), (0, 2), (3, 0)):
        got = fn(_cast_graph(pairs, lone))
        if got is None:
            raise NotImplementedError
        want = [(f"down{i}", f"up{i}") for i in range(pairs)]
        if sorted(map(tuple, got)) != want:
            return (f"a graph with {pairs} round-trip Cast pairs and {lone} lone Casts: expected {want}, got "
                    f"{sorted(map(tuple, got))}. A pair is a Cast whose only consumer is another Cast.")
    return None


def _wrong_pairs(graph) -> list[tuple[str, str]]:
    return [(n.name, n.name) for n in graph.nodes if n.op_type == "Cast"]


EXERCISES = [
    Exercise("12.1", "guided",
             "padded_size(size, precision): the smallest multiple of the precision's tensor-core alignment >= size.",
             _check_padding, counterexample=lambda size, precision: -(-size // 8) * 8),
    Exercise("12.2", "practice",
             "profile_for(batches): the (min, opt, max) optimization profile for the batch sizes served.",
             _check_profile, counterexample=lambda batches: (min(batches), max(batches), max(batches))),
    Exercise("12.3", "open",
             "cast_round_trips(graph): a new advisor check, every (first, second) pair of Cast nodes where the "
             "first's only consumer is the second.",
             _check_cast_pairs, counterexample=_wrong_pairs),
]

