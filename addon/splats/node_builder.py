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
        """Output ``name`` (the first *enabled* one: some nodes keep an output per data type, others
        only the active type's, depending on the Blender version) or index."""
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
        # NOT has a single input from Blender 5.2 on (two, one unused, before).
        inputs = {0: a} if op == "NOT" else {0: a, 1: b}
        return self.node("FunctionNodeBooleanMath", inputs, operation=op).outputs[0]

    def switch(self, kind: str, condition, if_false, if_true):
        node = self.node("GeometryNodeSwitch", input_type=kind)
        self.set_input(node, "Switch", condition)
        self.set_input(node, "False", if_false)
        self.set_input(node, "True", if_true)
        return node.outputs[0]

    def group(self, tree, inputs=None):
        """A group node running ``tree``; ``inputs`` as for :meth:`node`."""
        return self.node("GeometryNodeGroup" if self.tree.bl_idname == "GeometryNodeTree" else "ShaderNodeGroup",
                         inputs, node_tree=tree)


def build_group(name: str, inputs, outputs, build, kind: str = "GeometryNodeTree"):
    """The node group ``name`` (re)built: ``inputs``/``outputs`` are (name, socket type) pairs and
    ``build(builder, {input name: socket})`` returns {output name: socket}.

    Blender re-validates a whole tree after every edit made from Python, so a tree costs the square
    of its size to build; small groups keep building cheap and read better in the node editor.
    """
    import bpy

    tree = bpy.data.node_groups.get(name)
    if tree is None or tree.bl_idname != kind:
        tree = bpy.data.node_groups.new(name, kind)
    tree.nodes.clear()
    tree.interface.clear()
    for socket_name, socket_type in inputs:
        tree.interface.new_socket(socket_name, in_out="INPUT", socket_type=socket_type)
    for socket_name, socket_type in outputs:
        tree.interface.new_socket(socket_name, in_out="OUTPUT", socket_type=socket_type)
    b = NodeBuilder(tree)
    gin = b.node("NodeGroupInput")
    gout = b.node("NodeGroupOutput")
    result = build(b, {socket_name: gin.outputs[socket_name] for socket_name, _ in inputs})
    for socket_name, socket in result.items():
        b.links.new(socket, gout.inputs[socket_name])
    return tree


def versioned_group(name: str, version_key: str, version: int, fill):
    """The node group ``name``, as it is when it carries ``version``, else emptied and rebuilt in place
    by ``fill(group)`` (in place, so modifiers using it keep pointing at it)."""
    import bpy

    group = bpy.data.node_groups.get(name)
    if group is not None and group.bl_idname == "GeometryNodeTree" and group.get(version_key) == version:
        return group
    if group is None or group.bl_idname != "GeometryNodeTree":
        group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.nodes.clear()
    group.interface.clear()
    fill(group)
    group[version_key] = version
    return group
