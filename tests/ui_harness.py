"""Draws the extension's interface through a recording stand-in for Blender's ``UILayout``.

Blender draws panels only in a window, and a panel that names a missing property, operator or
icon does not fail: it shows a red error (or nothing) on the artist's screen. This harness calls
every draw function itself, with a ``RecordingLayout`` in place of ``self.layout``, and checks each
call against the running Blender's own RNA:

* the call exists on ``UILayout`` and every argument is one of its parameters, of the right type,
  and an enum argument (``icon``, ``type`` ...) is one of that parameter's items;
* every ``prop``/``prop_search``/``prop_enum``/``template_*`` (data, property) pair names a property
  of that data (an enum value one of its items);
* every operator, menu, panel and list type it names is registered, every property set on an
  operator button is one of that operator's properties (with a valid value), and the operator's
  ``poll`` runs;
* panels' and menus' ``poll`` runs and decides, as in Blender, whether ``draw`` is called.

What only a real window can do (``template_icon`` of a preview, a file browser) is recorded and its
arguments are checked the same way. Operators' ``invoke`` run with a window manager that records
the popup they open (``fileselect_add``, ``invoke_props_dialog`` ...), after which the operator's
``draw`` (and ``check``, as the file browser calls it) is drawn as Blender would.

The classes come from the registered extension itself (``discover``): every registered subclass of
Panel, Menu, Header, UIList, Operator and AddonPreferences defined in the extension's modules, and
every draw function the extension appended to another menu or header. A new panel is covered
without editing the tests.
"""
from __future__ import annotations

import contextlib
import inspect
import numbers
import sys
import traceback
import types
from dataclasses import dataclass

import bpy

UI_BASES = ("Panel", "Menu", "Header", "UIList", "Operator", "AddonPreferences")
_LAYOUT = bpy.types.UILayout.bl_rna
# (data parameter, property parameter) pairs of UILayout's functions that name a property of data.
_PATH_PARAMS = (("data", "property"), ("search_data", "search_property"), ("dataptr", "propname"),
                ("active_dataptr", "active_propname"), ("data_highlight", "property_highlight"),
                ("used_layers_data", "used_layers_property"), ("data", "type_property"))
# Window-manager calls that open something (a popup, a file browser) instead of running.
_POPUPS = ("fileselect_add", "invoke_props_dialog", "invoke_props_popup", "invoke_popup", "invoke_confirm",
           "invoke_search_popup", "popup_menu", "popover", "popup_menu_pie", "modal_handler_add",
           "event_timer_add")
_FLT_ITEM = 1 << 30  # UILST_FLT_ITEM: the bit a UIList's filter_items sets for a shown item
_MISSING = object()


def blender_version() -> str:
    return bpy.app.version_string


# ---------------------------------------------------------------------------------------------
# What the extension draws


@dataclass
class Interface:
    """The extension's UI classes by kind, and the draw functions it appended to other menus/headers."""

    classes: dict[str, list[type]]
    hooks: list[tuple[type, object]]  # (host class, function)

    def names(self) -> set[str]:
        return {c.__name__ for group in self.classes.values() for c in group} | {f.__name__ for _, f in self.hooks}


def _subclasses(base: type):
    seen, todo = set(), [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                yield sub


def _registered(cls) -> bool:
    return bool(getattr(cls, "is_registered", False))


def discover(module_name: str) -> Interface:
    """The registered UI classes defined in ``module_name``'s modules (walked both through the modules
    and through bpy's registered subclasses, so a class made by a factory is found too)."""

    def ours(obj) -> bool:
        module = getattr(obj, "__module__", "") or ""
        return module == module_name or module.startswith(module_name + ".")

    found: dict[str, list[type]] = {kind: [] for kind in UI_BASES}
    for kind in UI_BASES:
        base = getattr(bpy.types, kind)
        candidates = set(_subclasses(base))
        for name, module in list(sys.modules.items()):
            if module is not None and (name == module_name or name.startswith(module_name + ".")):
                candidates.update(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base))
        found[kind] = sorted((c for c in candidates if ours(c) and _registered(c)), key=lambda c: c.__name__)
    hooks = []
    for name in dir(bpy.types):
        host = getattr(bpy.types, name, None)
        if not (isinstance(host, type) and issubclass(host, (bpy.types.Menu, bpy.types.Header, bpy.types.Panel))):
            continue
        for function in getattr(host.__dict__.get("draw"), "_draw_funcs", ()):
            if ours(function):
                hooks.append((host, function))
    return Interface(found, sorted(hooks, key=lambda h: (h[0].__name__, h[1].__qualname__)))


# ---------------------------------------------------------------------------------------------
# Checks shared by the stand-ins


class Recording:
    """Everything one draw recorded: problems (strings naming the class, the call and what is wrong),
    the calls made, the labels shown, the classes drawn, the popups opened."""

    def __init__(self):
        self.problems: list[str] = []
        self.calls: list[tuple[str, str, dict]] = []  # (where, function, arguments)
        self.drawn: set[str] = set()
        self.lists_drawn: set[str] = set()
        self.popups: list[tuple[str, str]] = []  # (operator class, what invoke opened)
        self.where = ""

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.where}: {text}")

    def labels(self, where: str | None = None) -> list[str]:
        return [args.get("text", "") for args in self.called("label", where)]

    def called(self, function: str, where: str | None = None) -> list[dict]:
        return [args for w, name, args in self.calls if name == function and (where is None or w == where)]


def _unwrap(data):
    return data._ui_target() if isinstance(data, (Probe, OperatorButton)) else data


def _describe(data) -> str:
    rna = getattr(data, "bl_rna", None)
    return rna.identifier if rna is not None else type(data).__name__


def _check_value(rec: Recording, what: str, prop, value) -> None:
    """``value`` fits RNA property or parameter ``prop`` (its type, its enum items)."""
    kind = prop.type
    array = getattr(prop, "is_array", False) and getattr(prop, "array_length", 0) > 0
    if array and kind in ("BOOLEAN", "INT", "FLOAT"):
        try:
            items = list(value)
        except TypeError:
            rec.problem(f"{what}: expected {prop.array_length} values, got {value!r}")
            return
        for item in items:
            _check_scalar(rec, what, kind, item)
        return
    if kind == "ENUM":
        identifiers = {item.identifier for item in prop.enum_items}
        wanted = value if getattr(prop, "is_enum_flag", False) and isinstance(value, (set, frozenset)) else {value}
        if not all(isinstance(v, str) for v in wanted):
            rec.problem(f"{what}: expected an enum identifier, got {value!r}")
        elif len(identifiers) > 1 and not set(wanted) <= identifiers:
            # (a dynamic enum, whose items only a window's context makes, lists one fallback item or none here)
            bad = ", ".join(sorted(set(wanted) - identifiers))
            rec.problem(f"{what}: {bad!r} is not one of its {len(identifiers)} items on Blender {blender_version()}")
        return
    if kind == "POINTER":
        target = _unwrap(value)
        if target is None:
            if getattr(prop, "is_never_none", False):
                rec.problem(f"{what}: None where Blender needs data")
        elif not hasattr(target, "bl_rna"):
            rec.problem(f"{what}: expected Blender data, got {type(value).__name__}")
        return
    _check_scalar(rec, what, kind, value)


def _check_scalar(rec: Recording, what: str, kind: str, value) -> None:
    ok = {"STRING": lambda v: isinstance(v, str),
          "BOOLEAN": lambda v: isinstance(v, bool) or (isinstance(v, numbers.Integral) and v in (0, 1)),
          "INT": lambda v: isinstance(v, numbers.Integral),
          "FLOAT": lambda v: isinstance(v, numbers.Real)}.get(kind)
    if ok is not None and not ok(value):
        rec.problem(f"{what}: expected {kind.lower()}, got {type(value).__name__} {value!r}")


def _check_path(rec: Recording, what: str, data, prop: str):
    """``prop`` is a property of ``data`` (an RNA property, or an ID property as ``["key"]``);
    returns the RNA property when there is one."""
    target = _unwrap(data)
    if target is None:
        rec.problem(f"{what}: data is None")
        return None
    rna = getattr(target, "bl_rna", None)
    if rna is None:
        rec.problem(f"{what}: {type(target).__name__} is not Blender data")
        return None
    if not isinstance(prop, str):
        return None  # the value check has reported it
    if prop.startswith('["') and prop.endswith('"]'):
        key = prop[2:-2]
        try:
            present = key in target.keys()
        except (AttributeError, TypeError):
            present = False
        if not present:
            rec.problem(f"{what}: {_describe(target)} has no custom property {key!r}")
        return None
    found = rna.properties.get(prop)
    if found is None or prop == "rna_type":
        rec.problem(f"{what}: {_describe(target)} has no property {prop!r} on Blender {blender_version()}")
    return found


def operator_rna(idname: str):
    module, _, name = idname.partition(".")
    if not module or not name:
        return None
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type()
    except (AttributeError, KeyError):
        return None


def operator_class(idname: str):
    module, _, name = idname.partition(".")
    return bpy.types.Operator.bl_rna_get_subclass_py(f"{module.upper()}_OT_{name}")


def _registered_type(name: str, base) -> bool:
    found = getattr(bpy.types, name, None) if isinstance(name, str) else None
    return isinstance(found, type) and issubclass(found, base)


# ---------------------------------------------------------------------------------------------
# Stand-ins


class OperatorButton:
    """What ``layout.operator()`` returns: properties set on it must be the operator's (with valid values)."""

    def __init__(self, rec: Recording, idname: str, rna):
        object.__setattr__(self, "_rec", rec)
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "_values", {})

    def _ui_target(self):
        return self

    @property
    def bl_rna(self):
        return self._rna

    def is_property_set(self, name, ghost=True):
        return name in self._values

    def values(self) -> dict:
        """What the draw set on this button."""
        return dict(self._values)

    def __setattr__(self, name, value):
        self._values[name] = value
        if self._rna is None:
            return  # the unknown operator has been reported
        prop = self._rna.properties.get(name)
        if prop is None or name == "rna_type":
            self._rec.problem(f"operator {self._idname!r}: it has no property {name!r}")
        elif prop.type in ("POINTER", "COLLECTION"):
            self._rec.problem(f"operator {self._idname!r}.{name}: a button cannot set a {prop.type.lower()}")
        else:
            _check_value(self._rec, f"operator {self._idname!r}.{name}", prop, value)

    def __getattr__(self, name):
        if name in self._values:
            return self._values[name]
        if self._rna is not None and name in self._rna.properties:
            return _default(self._rna.properties[name])
        raise AttributeError(f"operator {self._idname!r} has no property {name!r}")


def _default(prop):
    if prop.type in ("BOOLEAN", "INT", "FLOAT") and getattr(prop, "is_array", False) and prop.array_length > 0:
        return list(prop.default_array)
    if prop.type == "ENUM":
        return set(prop.default_flag) if prop.is_enum_flag else prop.default
    if prop.type in ("POINTER",):
        return None
    if prop.type == "COLLECTION":
        return []
    return prop.default


class RecordingLayout:
    """A stand-in for ``bpy.types.UILayout`` that checks and records every call (see the module's doc)."""

    def __init__(self, harness: Harness, where: str):
        object.__setattr__(self, "_h", harness)
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_attrs", {})

    def __repr__(self):
        return f"<RecordingLayout of {self._where}>"

    def __getattr__(self, name):
        prop = _LAYOUT.properties.get(name)
        if prop is not None and name != "rna_type":
            return self._attrs.get(name, _default(prop))
        if name in _LAYOUT.functions:
            return lambda *args, **kwargs: self._h.layout_call(self, name, args, kwargs)
        raise AttributeError(f"UILayout has no {name!r} on Blender {blender_version()}")

    def __setattr__(self, name, value):
        rec = self._h.rec
        prop = _LAYOUT.properties.get(name)
        if prop is None or name == "rna_type":
            rec.problem(f"layout.{name} = {value!r}: UILayout has no property {name!r} on Blender {blender_version()}")
        elif prop.is_readonly:
            rec.problem(f"layout.{name} is read-only")
        else:
            _check_value(rec, f"layout.{name}", prop, value)
        self._attrs[name] = value


class RecordingWindowManager:
    """``context.window_manager`` for ``invoke``: popups and file browsers are recorded, not opened."""

    def __init__(self, harness: Harness, real):
        self._h, self._real = harness, real
        self.opened: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        if name in _POPUPS:
            return lambda *args, **kwargs: self._open(name, args, kwargs)
        return getattr(self._real, name)

    def _open(self, name, args, kwargs):
        fn = bpy.types.WindowManager.bl_rna.functions.get(name)
        if fn is not None:
            self._h.check_call(f"window_manager.{name}", fn, args, kwargs)
        elif "icon" in kwargs:  # popup_menu, popover: Python wrappers, icons as a label's
            _check_value(self._h.rec, f"window_manager.{name}(icon=...)",
                         _LAYOUT.functions["label"].parameters["icon"], kwargs["icon"])
        self.opened.append((name, kwargs))
        if name == "popup_menu" and args and callable(args[0]):  # popup_menu(draw_func, title=, icon=)
            self._h.call_draw(args[0], Probe(type("Popup", (), {}), self._h), bpy.context)
        return {"RUNNING_MODAL"} if name.startswith("invoke") else None


class ContextWithWindowManager:
    """The real context, with a recording window manager."""

    def __init__(self, real, wm):
        self._real, self.window_manager = real, wm

    def __getattr__(self, name):
        return getattr(self._real, name)


class Probe:
    """``self`` for a draw, invoke or draw_item call: the class's own methods and attributes, ``layout``
    the recording layout, and its data: an operator's properties (defaults, settable with checks), the
    preferences' real properties (``target``), a base class's RNA defaults (``is_popover`` ...)."""

    def __init__(self, cls, harness: Harness, target=None, operator: str = "", extra: dict | None = None):
        d = self.__dict__
        d["_cls"], d["_h"], d["_target"], d["_operator"] = cls, harness, target, operator
        d["_props"] = OperatorButton(harness.rec, operator, operator_rna(operator)) if operator else None
        d["layout"] = RecordingLayout(harness, cls.__name__)
        d["reports"] = []
        d.update(extra or {})

    def _ui_target(self):
        return self._props if self._props is not None else (self._target if self._target is not None else self)

    @property
    def bl_rna(self):
        target = self._ui_target()
        return target.bl_rna if target is not self else getattr(self._cls, "bl_rna", None)

    @property
    def properties(self):
        return self._props if self._props is not None else self._target

    def report(self, kind, message):
        self.reports.append((set(kind), message))

    def execute(self, _context):
        self.__dict__.setdefault("executed", 0)
        self.__dict__["executed"] += 1  # invoke that runs the operator at once opens nothing: not run here
        return {"FINISHED"}

    def poll_message_set(self, *_args):
        pass

    def __getattr__(self, name):
        props = self.__dict__["_props"]
        if props is not None and props._rna is not None and name in props._rna.properties and name != "rna_type":
            return getattr(props, name)
        target = self.__dict__["_target"]
        if target is not None and name in target.bl_rna.properties and name != "rna_type":
            return getattr(target, name)
        value = _class_attr(self._cls, name, self)
        if value is not _MISSING:
            return value
        raise AttributeError(f"{self._cls.__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        props = self._props
        if props is not None and props._rna is not None and name in props._rna.properties:
            setattr(props, name, value)
        elif self._target is not None and name in self._target.bl_rna.properties:
            setattr(self._target, name, value)
        else:
            self.__dict__[name] = value


def _class_attr(cls, name, instance):
    """``name`` looked up on ``cls`` as an instance would see it, from Python classes only (the extension's
    and its helpers'), bound to ``instance``; then the bpy base class's RNA default."""
    for klass in cls.__mro__:
        if klass is object or klass.__module__ in ("builtins", "bpy.types", "bpy_types", "_bpy_types"):
            continue
        if name not in klass.__dict__:
            continue
        raw = klass.__dict__[name]
        if isinstance(raw, staticmethod):
            return raw.__func__
        if isinstance(raw, classmethod):
            return types.MethodType(raw.__func__, cls)
        if isinstance(raw, property):
            return raw.fget(instance)
        if inspect.isfunction(raw):
            return types.MethodType(raw, instance)
        return raw
    for kind in UI_BASES:
        base = getattr(bpy.types, kind)
        if issubclass(cls, base):
            prop = base.bl_rna.properties.get(name)
            if prop is not None and name not in ("rna_type", "layout"):
                if name == "bitflag_filter_item":
                    return _FLT_ITEM
                return getattr(cls, name, _default(prop)) if name.startswith("bl_") else _default(prop)
    return _MISSING


# ---------------------------------------------------------------------------------------------
# Calling Blender's way


def _blender_args(function, args):
    """Blender passes a registered method only as many arguments as it takes (older signatures stay valid)."""
    code = getattr(function, "__code__", None)
    if code is None or code.co_flags & inspect.CO_VARARGS:
        return args
    count = code.co_argcount - (1 if inspect.ismethod(function) else 0)
    return args[:count]


class Harness:
    """Draws classes through the recording stand-ins into one ``Recording``."""

    def __init__(self, module_name: str):
        self.module_name = module_name
        self.rec = Recording()

    # -- the layout's calls --------------------------------------------------------------------

    def check_call(self, what: str, fn, args, kwargs) -> dict:
        """Binds ``args``/``kwargs`` to RNA function ``fn``'s parameters and checks each value."""
        rec = self.rec
        inputs = [p for p in fn.parameters if not p.is_output]
        bound: dict = {}
        if len(args) > len(inputs):
            rec.problem(f"{what}(): {len(args)} positional arguments, it takes {len(inputs)}")
        for param, value in zip(inputs, args, strict=False):
            bound[param.identifier] = value
        by_name = {p.identifier: p for p in inputs}
        for key, value in kwargs.items():
            if key not in by_name:
                rec.problem(f"{what}(): no parameter {key!r} on Blender {blender_version()}")
            elif key in bound:
                rec.problem(f"{what}(): {key!r} given twice")
            bound[key] = value
        for key, value in bound.items():
            if key in by_name:
                _check_value(rec, f"{what}({key}=...)", by_name[key], value)
        return bound

    def layout_call(self, layout: RecordingLayout, name: str, args, kwargs):
        rec = self.rec
        fn = _LAYOUT.functions[name]
        bound = self.check_call(name, fn, args, kwargs)
        rec.calls.append((layout._where, name, bound))
        for data_param, prop_param in _PATH_PARAMS:
            if data_param in bound and prop_param in bound:
                found = _check_path(rec, f"{name}({_describe(_unwrap(bound[data_param]))}, {bound[prop_param]!r})",
                                    bound[data_param], bound[prop_param])
                if name == "prop_enum" and found is not None and prop_param == "property":
                    _check_value(rec, f"prop_enum(..., {bound[prop_param]!r}, value)", found, bound.get("value"))
        result = None
        if "operator" in bound and name.startswith("operator"):
            result = bound["properties"] = self._operator_button(name, bound)
        if "menu" in bound and not _registered_type(bound["menu"], bpy.types.Menu):
            rec.problem(f"{name}(): no menu {bound['menu']!r} is registered")
        if name in ("popover", "prop_with_popover") and not _registered_type(bound.get("panel"), bpy.types.Panel):
            rec.problem(f"{name}(): no panel {bound.get('panel')!r} is registered")
        if name == "template_list":
            self._draw_list(bound)
        outputs = [p for p in fn.parameters if p.is_output]
        made = []
        for param in outputs:
            if param.type == "POINTER" and param.fixed_type.identifier == "UILayout":
                made.append(RecordingLayout(self, layout._where))
            elif param.type == "POINTER" and param.fixed_type.identifier == "OperatorProperties":
                made.append(result)
            else:  # enum_item_name, icon ...: a value of the output's type
                made.append(_default(param) if param.type != "POINTER" else None)
        if not made:
            return None
        return made[0] if len(made) == 1 else tuple(made)

    def _operator_button(self, name: str, bound: dict) -> OperatorButton:
        rec = self.rec
        idname = bound["operator"]
        rna = operator_rna(idname) if isinstance(idname, str) else None
        if rna is None:
            rec.problem(f"{name}({idname!r}): no such operator is registered on Blender {blender_version()}")
        elif "property" in bound:  # operator_enum / operator_menu_enum: one of the operator's enums
            prop = rna.properties.get(bound["property"])
            if prop is None or prop.type != "ENUM":
                rec.problem(f"{name}({idname!r}, {bound['property']!r}): the operator has no such enum property")
        if rna is not None:
            self._poll_operator(idname)
        return OperatorButton(rec, idname, rna)

    def _poll_operator(self, idname: str) -> None:
        cls = operator_class(idname)
        poll = getattr(cls, "poll", None) if cls is not None and "poll" in python_members(cls) else None
        if poll is None:
            return
        try:
            poll(bpy.context)
        except Exception:  # noqa: BLE001 - any exception is the finding
            self.rec.problem(f"{idname}.poll raised: {_last_line()}")

    def _draw_list(self, bound: dict) -> None:
        rec = self.rec
        list_type = bound.get("listtype_name")
        cls = getattr(bpy.types, list_type, None) if isinstance(list_type, str) else None
        if not (isinstance(cls, type) and issubclass(cls, bpy.types.UIList)):
            rec.problem(f"template_list({list_type!r}): no such UIList is registered")
            return
        data, propname = _unwrap(bound.get("dataptr")), bound.get("propname")
        if data is None or not isinstance(propname, str) or not hasattr(data, propname):
            return  # reported by the path check
        if not self.ours(cls):
            return
        self.draw_list(cls, data, propname, _unwrap(bound.get("active_dataptr")), bound.get("active_propname", ""))

    # -- drawing classes -----------------------------------------------------------------------

    def ours(self, obj) -> bool:
        module = getattr(obj, "__module__", "") or ""
        return module == self.module_name or module.startswith(self.module_name + ".")

    @contextlib.contextmanager
    def _where(self, where: str):
        before, self.rec.where = self.rec.where, where
        try:
            yield
        finally:
            self.rec.where = before

    def call_draw(self, function, probe, context, *args) -> bool:
        """Calls ``function(probe, context, *args)``; an exception is a problem. True when it returned."""
        try:
            function(probe, context, *args) if not inspect.ismethod(function) else function(context, *args)
        except Exception:  # noqa: BLE001 - any exception in a draw is the finding
            self.rec.problem(f"{getattr(function, '__qualname__', function)} raised: {_last_line()}")
            return False
        return True

    def poll(self, cls, context) -> bool:
        if "poll" not in python_members(cls):
            return True
        try:
            return bool(cls.poll(context))
        except Exception:  # noqa: BLE001
            self.rec.problem(f"{cls.__name__}.poll raised: {_last_line()}")
            return False

    def draw_panel(self, cls, context) -> None:
        with self._where(cls.__name__):
            self._check_panel_class(cls)
            if not self.poll(cls, context):
                return
            probe = Probe(cls, self)
            for method in ("draw_header", "draw_header_preset", "draw"):
                if method in python_members(cls):
                    self.call_draw(getattr(probe, method), probe, context)
            self.rec.drawn.add(cls.__name__)

    def _check_panel_class(self, cls) -> None:
        parent = getattr(cls, "bl_parent_id", "")
        if parent and not _registered_type(parent, bpy.types.Panel):
            self.rec.problem(f"bl_parent_id {parent!r} is not a registered panel")
        if getattr(cls, "bl_space_type", "") == "VIEW_3D" and getattr(cls, "bl_region_type", "") == "UI" \
                and not parent and getattr(cls, "bl_category", "") != "Splatwork":
            self.rec.problem(f"a sidebar panel outside the Splatwork tab (bl_category {cls.bl_category!r})")

    def draw_menu(self, cls, context) -> None:
        with self._where(cls.__name__):
            if not self.poll(cls, context):
                return
            probe = Probe(cls, self)
            if self.call_draw(probe.draw, probe, context):
                self.rec.drawn.add(cls.__name__)

    def draw_hook(self, host, function, context) -> None:
        where = f"{host.__name__} + {function.__qualname__}"
        with self._where(where):
            probe = Probe(host, self)
            probe.__dict__["layout"] = RecordingLayout(self, where)
            if self.call_draw(function, probe, context):
                self.rec.drawn.add(function.__name__)

    def draw_preferences(self, cls, context) -> None:
        with self._where(cls.__name__):
            addon = context.preferences.addons.get(cls.bl_idname)
            if addon is None or addon.preferences is None:
                self.rec.problem(f"no preferences for {cls.bl_idname!r}")
                return
            probe = Probe(cls, self, target=addon.preferences)
            if self.call_draw(probe.draw, probe, context):
                self.rec.drawn.add(cls.__name__)

    def draw_list(self, cls, data, propname, active_data, active_propname) -> None:
        with self._where(cls.__name__):
            probe = Probe(cls, self, extra={"filter_name": "", "use_filter_invert": False,
                                            "use_filter_sort_alpha": False, "use_filter_sort_reverse": False})
            items = list(getattr(data, propname))
            flags = []
            if "filter_items" in python_members(cls):
                try:
                    flags, _order = probe.filter_items(bpy.context, data, propname)
                except Exception:  # noqa: BLE001
                    self.rec.problem(f"filter_items raised: {_last_line()}")
                    return
                if flags and len(flags) != len(items):
                    self.rec.problem(f"filter_items gave {len(flags)} flags for {len(items)} items")
            if "draw_filter" in python_members(cls):
                self.call_draw(probe.draw_filter, probe, bpy.context, probe.layout)
            shown = [(i, item) for i, item in enumerate(items) if not flags or flags[i] & _FLT_ITEM][:50]
            for index, item in shown:
                draw = probe.draw_item
                args = (bpy.context, RecordingLayout(self, cls.__name__), data, item, 0, active_data,
                        active_propname, index, flags[index] if flags else 0)
                if not self.call_draw(draw, probe, *_blender_args(draw, args)):
                    break
            if shown:
                self.rec.lists_drawn.add(cls.__name__)

    def draw_operator(self, cls, context) -> None:
        """Where its ``poll`` passes: ``invoke`` with a recording window manager, then what Blender draws
        for the popup it opened (the operator's ``draw``; a file browser also calls ``check``). An
        operator with a ``draw`` and no ``invoke`` is drawn as its Adjust Last Operation panel."""
        members = python_members(cls)
        idname = _operator_idname(cls)
        with self._where(cls.__name__):
            if operator_rna(idname) is None:
                self.rec.problem(f"{idname!r} is not registered")
                return
            if not self.poll(cls, context):  # Blender neither invokes it nor shows its redo panel
                return
            probe = Probe(cls, self, operator=idname)
            opened = []
            if "invoke" in members:
                wm = RecordingWindowManager(self, context.window_manager)
                event = types.SimpleNamespace(**{k: _default(p) for k, p in bpy.types.Event.bl_rna.properties.items()
                                                 if k != "rna_type"})
                event.type, event.value = "LEFTMOUSE", "PRESS"
                try:
                    result = probe.invoke(ContextWithWindowManager(context, wm), event)
                except Exception:  # noqa: BLE001
                    self.rec.problem(f"invoke raised: {_last_line()}")
                    return
                if not isinstance(result, (set, frozenset)) or not result <= {
                        "RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"}:
                    self.rec.problem(f"invoke returned {result!r}, not a set of return states")
                opened = [name for name, _ in wm.opened]
                self.rec.popups.append((cls.__name__, ",".join(opened) or "nothing (ran at once)"))
            shows_draw = bool({"fileselect_add", "invoke_props_dialog", "invoke_props_popup", "invoke_popup"}
                              & set(opened)) or "invoke" not in members
            if "fileselect_add" in opened and "check" in members:
                try:
                    probe.check(context)
                except Exception:  # noqa: BLE001
                    self.rec.problem(f"check raised: {_last_line()}")
            if "draw" in members and shows_draw:
                if self.call_draw(probe.draw, probe, context):
                    self.rec.drawn.add(cls.__name__)
            elif "invoke" in members:
                self.rec.drawn.add(cls.__name__)


def _operator_idname(cls) -> str:
    idname = getattr(cls, "bl_idname", "")
    if "_OT_" in idname:
        module, _, name = idname.partition("_OT_")
        return f"{module.lower()}.{name}"
    return idname


def python_members(cls) -> set[str]:
    """Names defined by Python classes in ``cls``'s MRO (not by bpy's base classes)."""
    names = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ in ("builtins", "bpy.types", "bpy_types", "_bpy_types"):
            continue
        names.update(klass.__dict__)
    return names


def _last_line() -> str:
    exc_type, exc, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{exc_type.__name__}: {exc}{where}"


# ---------------------------------------------------------------------------------------------
# Contexts


@contextlib.contextmanager
def ui_context(space_type: str | None, region_type: str | None):
    """``bpy.context`` overridden to the window's first area of ``space_type`` and its region, as a
    panel of that space sees it (the plain context where the screen has no such area)."""
    wm = bpy.context.window_manager
    window = wm.windows[0] if wm.windows else None
    area = region = None
    if window is not None and space_type:
        area = next((a for a in window.screen.areas if a.type == space_type), None)
        if area is not None:
            region = next((r for r in area.regions if r.type == (region_type or "WINDOW")), None)
    overrides = {k: v for k, v in (("window", window), ("area", area), ("region", region)) if v is not None}
    if window is not None:
        overrides["screen"] = window.screen
    with bpy.context.temp_override(**overrides):
        yield bpy.context


def draw_everything(module_name: str, interface: Interface | None = None) -> Recording:
    """Every panel, menu, header, appended draw function, preferences, list and operator popup of the
    extension, drawn once in the current state of Blender; returns the recording (``problems`` empty
    when everything drew cleanly)."""
    interface = interface or discover(module_name)
    harness = Harness(module_name)
    for cls in interface.classes["Panel"]:
        with ui_context(cls.bl_space_type, cls.bl_region_type) as context:
            harness.draw_panel(cls, context)
    for cls in interface.classes["Menu"] + interface.classes["Header"]:
        with ui_context(getattr(cls, "bl_space_type", None), None) as context:
            harness.draw_menu(cls, context)
    for host, function in interface.hooks:
        with ui_context(getattr(host, "bl_space_type", None), getattr(host, "bl_region_type", None)) as context:
            harness.draw_hook(host, function, context)
    for cls in interface.classes["AddonPreferences"]:
        with ui_context(None, None) as context:
            harness.draw_preferences(cls, context)
    for cls in interface.classes["Operator"]:
        if {"draw", "invoke"} & python_members(cls):
            with ui_context("VIEW_3D", "WINDOW") as context:
                harness.draw_operator(cls, context)
    return harness.rec
