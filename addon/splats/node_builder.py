"""A small helper for building node trees in code: nodes are created and linked in one call each.

Inputs may be sockets (linked) or plain values (set as the socket's default), so a formula reads
like ``b.math("MULTIPLY", x, 0.5)`` instead of five lines of node plumbing.
"""
from __future__ import annotations


class NodeBuilder:
    def __init__(self, tree):
        self.tree = tree
        self.nodes = tree.nodes
        self.links = tree.links

    def node(self, kind: str, inputs=None, **props):
        node = self.nodes.new(kind)
        for key, value in props.items():
            setattr(node, key, value)
        for key, value in (inputs or {}).items():
            self.set_input(node, key, value)
        return node

    def set_input(self, node, key, value) -> None:
        """``key`` is an input index or a name (the first *enabled* socket with that name)."""
        if isinstance(key, int):
            socket = node.inputs[key]
        else:
            socket = next(s for s in node.inputs if s.name == key and s.enabled)
        if hasattr(value, "is_output"):
            self.links.new(value, socket)
        else:
            socket.default_value = value

    @staticmethod
    def out(node, name: str | int = 0):
        if isinstance(name, int):
            return node.outputs[name]
        return next(s for s in node.outputs if s.name == name and s.enabled)

    def math(self, op: str, a, b=0.0, c=0.0):
        return self.out(self.node("ShaderNodeMath", {0: a, 1: b, 2: c}, operation=op))

    def vmath(self, op: str, a, b=(0.0, 0.0, 0.0), scale=None):
        inputs = {0: a, 1: b}
        if scale is not None:
            inputs[3] = scale
        node = self.node("ShaderNodeVectorMath", inputs, operation=op)
        return self.out(node, "Value" if op in ("DOT_PRODUCT", "LENGTH", "DISTANCE") else "Vector")

    def separate(self, vector):
        node = self.node("ShaderNodeSeparateXYZ", {0: vector})
        return node.outputs[0], node.outputs[1], node.outputs[2]

    def combine(self, x=0.0, y=0.0, z=0.0):
        return self.out(self.node("ShaderNodeCombineXYZ", {0: x, 1: y, 2: z}))

    def compare(self, op: str, a, b):
        node = self.node("FunctionNodeCompare", {"A": a, "B": b}, data_type="FLOAT", operation=op)
        return node.outputs[0]

    def boolean(self, op: str, a, b=False):
        return self.node("FunctionNodeBooleanMath", {0: a, 1: b}, operation=op).outputs[0]

    def switch(self, kind: str, condition, if_false, if_true):
        node = self.node("GeometryNodeSwitch", input_type=kind)
        self.set_input(node, "Switch", condition)
        self.set_input(node, "False", if_false)
        self.set_input(node, "True", if_true)
        return node.outputs[0]
