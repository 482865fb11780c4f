"""The PLY container: header, elements as numpy structured arrays, and writing them back.

Both splat PLY flavours (standard 3DGS and SuperSplat compressed) sit on this. The header is parsed
here rather than by plyfile so every count is checked against the bytes really in the file before
anything is allocated: a header claiming 10^12 vertices fails at once instead of asking for
terabytes.
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError, warn

# PLY scalar type names (both spellings) -> numpy type without byte order.
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
# numpy type -> the name we write (the classic names every PLY reader knows).
PLY_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
             "f4": "float", "f8": "double"}
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}

MAX_HEADER_BYTES = 1 << 20  # real headers are a few KB; this bounds reading a non-PLY file


@dataclass
class Element:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy type like "f4")
    offset: int = 0  # where its binary data starts in the file (set by open_ply)

    def dtype(self, byte_order: str) -> np.dtype:
        return np.dtype([(name, byte_order + kind) for name, kind in self.properties])


@dataclass
class Header:
    format: str
    elements: list[Element]
    data_offset: int  # bytes from the start of the file to the first element's data
    comments: list[str] = field(default_factory=list)
    trailing: str = ""  # what follows the last element, if anything (reported once the data is valid)

    @property
    def byte_order(self) -> str | None:
        return FORMATS[self.format]

    def element(self, name: str) -> Element | None:
        return next((e for e in self.elements if e.name == name), None)


def read_header(path: str | os.PathLike, head: bytes) -> Header:
    """Parse the header at the start of ``head`` (the file's first bytes)."""
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise FormatError(path, "not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise FormatError(path, "PLY header has no 'end_header' line (file truncated or not a PLY file)")
    line_end = head.find(b"\n", end)
    if line_end < 0:
        raise FormatError(path, "PLY header ends without a newline after 'end_header' (file truncated)")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "PLY header contains non-ASCII bytes") from None

    fmt = None
    elements: list[Element] = []
    comments: list[str] = []
    for number, raw in enumerate(text.splitlines()[1:], start=2):
        words = raw.split()
        if not words:
            continue
        keyword = words[0]
        if keyword in ("comment", "obj_info"):
            comments.append(raw.partition(" ")[2])
        elif keyword == "format":
            if len(words) != 3 or words[1] not in FORMATS:
                raise FormatError(path, f"PLY header line {number}: unknown format {raw.strip()!r}")
            fmt = words[1]
        elif keyword == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise FormatError(path, f"PLY header line {number}: bad element line {raw.strip()!r}")
            if any(e.name == words[1] for e in elements):
                raise FormatError(path, f"PLY header line {number}: a second element named '{words[1]}'")
            elements.append(Element(words[1], int(words[2])))
        elif keyword == "property":
            if not elements:
                raise FormatError(path, f"PLY header line {number}: property before any element")
            if words[1:2] == ["list"]:
                raise FormatError(
                    path, f"PLY element '{elements[-1].name}' has a list property ({raw.strip()!r}); "
                    "splat files have none")
            if len(words) != 3 or words[1] not in PLY_TYPES:
                raise FormatError(path, f"PLY header line {number}: unknown property type in {raw.strip()!r}")
            if any(name == words[2] for name, _ in elements[-1].properties):
                raise FormatError(path, f"PLY element '{elements[-1].name}' has property '{words[2]}' twice")
            elements[-1].properties.append((words[2], PLY_TYPES[words[1]]))
        else:
            raise FormatError(path, f"PLY header line {number}: unknown keyword {keyword!r}")
    if fmt is None:
        raise FormatError(path, "PLY header has no 'format' line")
    empty = [e.name for e in elements if not e.properties and e.count]
    if empty:
        raise FormatError(path, f"PLY element '{empty[0]}' has rows but no properties")
    return Header(fmt, elements, line_end + 1, comments)


def read_head(path: str | os.PathLike) -> tuple[int, bytes]:
    """The file's real size and its first ``MAX_HEADER_BYTES`` bytes; FormatError when unreadable."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise FormatError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open, /dev/zero never end
        raise FormatError(path, f"not a regular file (it is {_file_kind(st.st_mode)})")
    try:
        with open(path, "rb") as f:
            return st.st_size, f.read(min(st.st_size, MAX_HEADER_BYTES))  # read(n) allocates n bytes up front
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


def open_ply(path: str | os.PathLike) -> Header:
    """The header, with every element's size checked against the file's real size and located.

    Nothing is allocated from the counts until they are known to fit in the file.
    """
    size, head = read_head(path)
    header = read_header(path, head)
    if header.byte_order is None:
        # Each ASCII value takes at least two bytes (a digit and a separator; the last may lack its own).
        wanted = sum(e.count * len(e.properties) for e in header.elements)
        room = (size - header.data_offset + 1) // 2
        if wanted > room:
            raise FormatError(path, f"truncated: the header declares {wanted:,} values but the ASCII body "
                              f"has room for at most {room:,}")
        return header
    offset = header.data_offset
    for element in header.elements:
        itemsize = element.dtype("<").itemsize
        available = size - offset
        if element.count > available // max(itemsize, 1):
            raise FormatError(
                path, f"truncated: the header declares {element.count:,} '{element.name}' rows "
                f"({element.count * itemsize:,} bytes) but only {max(available, 0):,} bytes follow")
        element.offset = offset
        offset += element.count * itemsize
    if offset < size:
        header.trailing = f"{size - offset} unexpected byte(s) after the last PLY element were ignored"
    return header


def read_elements(path: str | os.PathLike, names: set[str] | None = None) -> tuple[Header, dict[str, np.ndarray]]:
    """The header and the elements named in ``names`` (all when None) as structured arrays."""
    header = open_ply(path)
    if header.byte_order is None:
        return header, _read_ascii(path, header, names)
    arrays = {}
    for element in header.elements:
        if names is None or element.name in names:
            arrays[element.name] = np.fromfile(path, element.dtype(header.byte_order), element.count,
                                               offset=element.offset)
    return header, arrays


def iter_rows(path, header: Header, element: Element, chunk_bytes: int = 8 << 20):
    """``(first row, rows)`` blocks of one element, as structured arrays.

    Binary data streams through one reused buffer: the file is copied once, straight into whatever
    the caller gathers from each block, and the extra memory stays at ``chunk_bytes`` however large
    the file. (A memory map measured up to 10x slower on a busy machine; reading it whole doubles the
    peak memory.) ASCII bodies come as one block.
    """
    if header.byte_order is None:
        yield 0, _read_ascii(path, header, {element.name})[element.name]
        return
    dtype = element.dtype(header.byte_order)
    per_block = max(1, chunk_bytes // dtype.itemsize)
    buffer = bytearray(min(per_block, element.count) * dtype.itemsize)
    with open(path, "rb") as f:
        f.seek(element.offset)
        for start in range(0, element.count, per_block):
            rows = min(per_block, element.count - start)
            view = memoryview(buffer)[:rows * dtype.itemsize]
            if f.readinto(view) != len(view):
                raise FormatError(path, "truncated: the file ended while reading it")
            yield start, np.frombuffer(view, dtype)


def _read_ascii(path, header: Header, names: set[str] | None) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        f.seek(header.data_offset)
        body = f.read()
    wanted = sum(e.count * len(e.properties) for e in header.elements)  # bounded by open_ply
    # fromstring parses in C: no Python object per value, so memory stays at 8 bytes a value.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy's signal for unparsable text
        try:
            values = np.fromstring(body, np.float64, sep=" ")
        except (DeprecationWarning, ValueError):
            raise FormatError(path, "the ASCII PLY body contains a value that is not a number") from None
    if len(values) < wanted:
        raise FormatError(path, f"truncated: the header declares {wanted:,} values but the file has {len(values):,}")
    if len(values) > wanted:
        header.trailing = f"{len(values) - wanted} unexpected value(s) after the last PLY element were ignored"
    arrays, start = {}, 0
    for element in header.elements:
        width = len(element.properties)
        block = values[start:start + element.count * width].reshape(element.count, width)
        start += element.count * width
        if names is None or element.name in names:
            out = np.empty(element.count, element.dtype("="))
            for column, (name, kind) in enumerate(element.properties):
                out[name] = _fitting(path, element.name, name, kind, block[:, column])
            arrays[element.name] = out
    return arrays


def _fitting(path, element: str, name: str, kind: str, values: np.ndarray) -> np.ndarray:
    """ASCII values checked to fit their property's type, which a plain cast would wrap or overflow."""
    if kind.startswith("f"):
        bad = np.isfinite(values) & (np.abs(values) > np.finfo(kind).max)  # NaN and Inf are judged later
    else:
        limits = np.iinfo(kind)
        with np.errstate(invalid="ignore"):
            bad = ~((values >= limits.min) & (values <= limits.max) & (values == np.round(values)))
    if bad.any():
        raise FormatError(path, f"ASCII PLY value {values[bad][0]!r} does not fit '{element}.{name}', "
                          f"a {PLY_NAMES[kind]} property")
    return values.astype(kind)


def warn_trailing(path, header: Header) -> None:
    """Called by a reader once the data proved valid, so a broken file gets its error alone."""
    if header.trailing:
        warn(path, header.trailing)


def header_bytes(elements: list[tuple[str, int, np.dtype]], comments: list[str] = ()) -> bytes:
    """A binary little-endian PLY header for ``(name, count, structured dtype)`` elements."""
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments]
    for name, count, dtype in elements:
        lines.append(f"element {name} {count}")
        for prop in dtype.names:
            kind = dtype.fields[prop][0]
            lines.append(f"property {PLY_NAMES[kind.kind + str(kind.itemsize)]} {prop}")
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def ply_type_for(path, name: str, values: np.ndarray) -> str:
    """The numpy type (as in ``PLY_TYPES``) an extra property is written as."""
    kind = "u1" if values.dtype == np.bool_ else values.dtype.kind + str(values.dtype.itemsize)
    if kind not in PLY_NAMES:
        raise FormatError(path, f"extra property '{name}' has dtype {values.dtype}, which PLY cannot store")
    return kind
