"""A renderer for the subset of Go's text/template that Ollama chat templates use, so the template round-trip
check runs without Go installed. The tests render the same templates with Go's own text/template
(exporters/ollama/render/main.go) and require identical output.

Supported: text, {{- / -}} trim markers, comments, if / else if / else / end, range [$i, $x :=] over lists,
$x := declarations and $x = assignments, fields (.A.B, $.A, $x.A), string / int / bool literals, parenthesized calls and the
builtins eq, ne, lt, le, gt, ge, and, or, not, len, index, slice, and Ollama's currentDate and json. Anything else raises
UnsupportedTemplate. Ollama's typed values (a tool, a call's function and arguments) are Struct: fields to read,
and the JSON their Go String() method prints.
"""

import datetime
import json
import re


class UnsupportedTemplate(ValueError):
    pass


class Struct(dict):
    """A Go struct of Ollama's api package: its fields by Go name, and `wire`, what json.Marshal (and its String
    method, where it has one) writes for it (None: printed and marshalled from its fields, not used by templates)."""

    def __init__(self, fields: dict, wire):
        super().__init__(fields)
        self.wire = wire


def _plain(v):
    if isinstance(v, Struct) and v.wire is not None:
        return _plain(v.wire)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def go_json(v) -> str:
    """json.Marshal as Ollama's `json` template function calls it: compact, <, > and & escaped, UTF-8 kept
    (struct fields and Ollama's ordered maps in their order)."""
    text = json.dumps(_plain(v), ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


# an action ends at the first }} outside its string literals (Go's lexer reads "}}" inside a quoted string as text)
_ACTION = re.compile(r'\{\{(- )?((?:"(?:[^"\\]|\\.)*"|`[^`]*`|[^"`])*?)( -)?\}\}', re.DOTALL)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<lp>\()|(?P<rp>\))|(?P<num>-?\d+)'
                    r"|(?P<decl>:=)|(?P<assign>=)|(?P<comma>,)|(?P<word>[$.A-Za-z_][$.\w]*))")


def _tokens(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise UnsupportedTemplate(f"cannot parse action near {src[pos:pos + 20]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
        while pos < len(src) and src[pos].isspace():
            pos += 1
    return out


def _parse(template: str) -> list:
    """Nodes: ("text", s), ("out", expr), ("decl", name, expr), ("if", [(cond, body)...], else_body),
    ("range", key, val, expr, body)."""
    parts: list = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        parts.append(("text", text))
        parts.append(("action", m.group(2).strip(), bool(m.group(3))))
        pos = m.end()
    parts.append(("text", template[pos:]))
    # a -}} trims the leading whitespace of the following text
    for i, part in enumerate(parts):
        if part[0] == "action" and part[2] and i + 1 < len(parts):
            parts[i + 1] = ("text", parts[i + 1][1].lstrip(" \t\r\n"))
    nodes, _ = _block(iter(parts), top=True)
    return nodes


def _block(parts, top=False):
    nodes = []
    for part in parts:
        if part[0] == "text":
            if part[1]:
                nodes.append(("text", part[1]))
            continue
        src = part[1]
        if src.startswith("/*"):
            continue
        head = src.split(None, 1)[0] if src else ""
        if head in ("end", "else"):
            if top:
                raise UnsupportedTemplate(f"unexpected {{{{{src}}}}}")
            return nodes, src
        if head == "if":
            branches, else_body = [], []
            cond = _expr(src[2:])
            while True:
                body, closer = _block(parts)
                branches.append((cond, body))
                if closer == "end":
                    break
                if closer.startswith("else if"):
                    cond = _expr(closer[len("else if"):])
                    continue
                if closer == "else":
                    else_body, closer = _block(parts)
                    if closer != "end":
                        raise UnsupportedTemplate("if: else must be followed by end")
                    break
                raise UnsupportedTemplate(f"unsupported {{{{{closer}}}}}")
            nodes.append(("if", branches, else_body))
        elif head == "range":
            toks = _tokens(src[len("range"):])
            key = val = None
            kinds = [k for k, _ in toks]
            if "decl" in kinds:
                names = [v for k, v in toks[:kinds.index("decl")] if k == "word"]
                toks = toks[kinds.index("decl") + 1:]
                key, val = (None, names[0]) if len(names) == 1 else (names[0], names[1])
            body, closer = _block(parts)
            if closer != "end":
                raise UnsupportedTemplate("range with else is not supported")
            nodes.append(("range", key, val, _command(toks), body))
        elif head in ("with", "define", "template", "block", "break", "continue"):
            raise UnsupportedTemplate(f"{{{{{head}}}}} is not supported")
        else:
            toks = _tokens(src)
            if len(toks) > 2 and toks[1][0] in ("decl", "assign"):
                nodes.append((toks[1][0], toks[0][1], _command(toks[2:])))
            else:
                nodes.append(("out", _command(toks)))
    if not top:
        raise UnsupportedTemplate("missing {{end}}")
    return nodes, None


def _expr(src: str):
    return _command(_tokens(src))


def _command(toks):
    args, i = [], 0
    while i < len(toks):
        kind, value = toks[i]
        if kind == "lp":
            depth, j = 1, i + 1
            while depth:
                if j >= len(toks):
                    raise UnsupportedTemplate("unbalanced parentheses")
                depth += {"lp": 1, "rp": -1}.get(toks[j][0], 0)
                j += 1
            args.append(_command(toks[i + 1: j - 1]))
            i = j
            continue
        if kind == "str":
            args.append(("lit", json.loads(value)))
        elif kind == "raw":
            args.append(("lit", value[1:-1]))
        elif kind == "num":
            args.append(("lit", int(value)))
        elif kind == "word" and value in ("true", "false"):
            args.append(("lit", value == "true"))
        elif kind == "word":
            args.append(("ref", value))
        else:
            raise UnsupportedTemplate(f"unexpected {value!r}")
        i += 1
    if not args:
        raise UnsupportedTemplate("empty command")
    if args[0][0] == "ref" and (args[0][1] in _FUNCS or args[0][1] in ("and", "or")):
        return ("call", args[0][1], args[1:])
    if len(args) != 1:
        raise UnsupportedTemplate(f"cannot call {args[0]!r}")
    return args[0]


def _truth(v) -> bool:
    return not (v is None or v is False or v == 0 and not isinstance(v, bool) or
                (isinstance(v, (str, list, dict)) and len(v) == 0))


def _eq(a, *bs):
    return any(a == b for b in bs)


_FUNCS = {
    "eq": _eq, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "not": lambda a: not _truth(a),
    "currentDate": lambda: datetime.date.today().isoformat(),  # Ollama's additions to the builtins
    "json": go_json,
    "len": len, "index": lambda x, *ks: _index(x, ks), "slice": lambda x, *ix: x[ix[0]:ix[1]] if len(ix) == 2 else x[ix[0]:] if ix else x,
}


def _index(x, keys):
    for k in keys:
        if isinstance(x, Struct):
            raise UnsupportedTemplate("index of a struct (Ollama's messages, tools and calls are structs: use a field)")
        x = x[k]
    return x


class _Scope:
    def __init__(self, root):
        self.root = root
        self.frames = [{"$": root}]

    def lookup(self, name, dot):
        if name == ".":
            return dot
        if name.startswith("."):
            base, path = dot, name[1:].split(".")
        else:
            head, _, tail = name.partition(".")
            frame = next((f for f in reversed(self.frames) if head in f), None)
            if frame is None:
                raise UnsupportedTemplate(f"undefined variable {head}")
            base = frame[head]
            path = tail.split(".") if tail else []
        for field in path:
            if not isinstance(base, dict) or field not in base:
                raise UnsupportedTemplate(f"no field {field!r} in {name}")
            base = base[field]
        return base


def _eval(expr, scope, dot):
    kind = expr[0]
    if kind == "lit":
        return expr[1]
    if kind == "ref":
        return scope.lookup(expr[1], dot)
    name, args = expr[1], expr[2]
    if name == "and":
        value = True
        for a in args:
            value = _eval(a, scope, dot)
            if not _truth(value):
                return value
        return value
    if name == "or":
        value = False
        for a in args:
            value = _eval(a, scope, dot)
            if _truth(value):
                return value
        return value
    return _FUNCS[name](*[_eval(a, scope, dot) for a in args])


def _show(v) -> str:
    if isinstance(v, Struct) and v.wire is not None:  # the String() method of Ollama's tool types
        return go_json(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "<no value>"
    return str(v)


def _run(nodes, scope, dot, out):
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "out":
            out.append(_show(_eval(node[1], scope, dot)))
        elif kind == "decl":
            scope.frames[-1][node[1]] = _eval(node[2], scope, dot)
        elif kind == "assign":  # Go's `$x = v` sets the variable where it was declared
            frame = next((f for f in reversed(scope.frames) if node[1] in f), None)
            if frame is None:
                raise UnsupportedTemplate(f"undefined variable {node[1]}")
            frame[node[1]] = _eval(node[2], scope, dot)
        elif kind == "if":
            body = next((b for c, b in node[1] if _truth(_eval(c, scope, dot))), node[2])
            scope.frames.append({})
            _run(body, scope, dot, out)
            scope.frames.pop()
        elif kind == "range":
            _, key, val, expr, body = node
            items = _eval(expr, scope, dot) or []
            for i, item in enumerate(items):
                scope.frames.append({k: v for k, v in ((key, i), (val, item)) if k})
                _run(body, scope, item, out)
                scope.frames.pop()


def render(template: str, values: dict) -> str:
    """Render `template` with `values` (the data Ollama passes: System, Messages [{Role, Content}], ...)."""
    nodes = _parse(template)
    out: list[str] = []
    _run(nodes, _Scope(values), values, out)
    return "".join(out)
