"""A small Dockerfile parser for the tests (standard library only).

Reads the subset of the Dockerfile syntax that the project's Dockerfile may use: comments,
parser directives, line continuations, JSON (exec) and shell forms, flags (--from=, --chown=…),
stages (FROM image [AS name]). It rejects what Docker itself would reject: unknown instructions,
a first instruction other than FROM/ARG, malformed JSON arrays, duplicate stage names.
"""

import json
import re
import shlex

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}


class DockerfileError(ValueError):
    pass


class Instruction:
    def __init__(self, line, keyword, flags, args, json_form, text=""):
        self.line = line            # 1-based line where the instruction starts
        self.text = text            # the arguments as written (continuations joined)
        self.keyword = keyword      # upper case
        self.flags = flags          # {"from": "build", ...} from leading --name=value words
        self.args = args            # list of words (JSON form, or shell-split)
        self.json_form = json_form  # True for ["exec", "form"]

    def __repr__(self):
        return f"<{self.keyword} line {self.line} {self.args!r}>"


class Stage:
    def __init__(self, index, image, name):
        self.index = index
        self.image = image
        self.name = name
        self.instructions = []

    def find(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text):
    """Joins continuation lines (ending in the escape character), drops comments and blanks."""
    escape = "\\"
    lines = text.split("\n")
    # Parser directives: only at the very top, before any instruction, comment-looking lines.
    for raw in lines:
        m = re.match(r"^#\s*(\w+)\s*=\s*(\S+)\s*$", raw)
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
    current, start = None, 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if current is None and (not stripped or stripped.startswith("#")):
            continue
        if current is not None and stripped.startswith("#"):
            continue  # comments inside a continued instruction are removed
        if current is None:
            current, start = "", number
        if raw.rstrip().endswith(escape):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        yield start, current.strip()
        current = None
    if current is not None:
        raise DockerfileError(f"line {start}: the file ends inside a continued instruction")


def _parse_args(keyword, rest, line):
    flags = {}
    # Flags come first: --name=value (HEALTHCHECK's come before CMD).
    while rest.startswith("--"):
        m = re.match(r"--([a-z-]+)(?:=(\S*))?\s*", rest)
        if not m:
            raise DockerfileError(f"line {line}: malformed flag in {keyword}")
        flags[m.group(1)] = m.group(2) if m.group(2) is not None else ""
        rest = rest[m.end():]
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError as e:
            raise DockerfileError(f"line {line}: {keyword}: malformed JSON array: {e}")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DockerfileError(f"line {line}: {keyword}: JSON form must be strings")
        return flags, value, True, rest
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as e:
        raise DockerfileError(f"line {line}: {keyword}: {e}")
    return flags, words, False, rest


def parse(text):
    """Returns the list of stages, each with its instructions (FROM included)."""
    stages, names, seen_from = [], set(), False
    for line, logical in _logical_lines(text):
        m = re.match(r"^(\w+)(?:\s+(.*))?$", logical, re.S)
        if not m:
            raise DockerfileError(f"line {line}: cannot read {logical!r}")
        keyword, rest = m.group(1).upper(), (m.group(2) or "").strip()
        if keyword not in INSTRUCTIONS:
            raise DockerfileError(f"line {line}: unknown instruction {m.group(1)}")
        if not seen_from and keyword not in ("FROM", "ARG"):
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
        if keyword == "HEALTHCHECK":
            hm = re.match(r"^((?:--\S+\s+)*)(CMD|NONE)\b\s*(.*)$", rest, re.S | re.I)
            if not hm:
                raise DockerfileError(f"line {line}: HEALTHCHECK needs CMD or NONE")
            flags, _, _, _ = _parse_args(keyword, hm.group(1).strip(), line)
            if hm.group(2).upper() == "NONE":
                instr = Instruction(line, keyword, flags, [], False)
            else:
                _, args, json_form, text = _parse_args(keyword, hm.group(3).strip(), line)
                instr = Instruction(line, keyword, flags, args, json_form, text)
                instr.flags["cmd"] = ""
        else:
            flags, args, json_form, text = _parse_args(keyword, rest, line)
            instr = Instruction(line, keyword, flags, args, json_form, text)
        if not instr.args and keyword not in ("HEALTHCHECK",):
            raise DockerfileError(f"line {line}: {keyword} without arguments")
        if keyword == "FROM":
            seen_from = True
            args = instr.args
            if len(args) == 3 and args[1].upper() == "AS":
                name = args[2].lower()
                if name in names:
                    raise DockerfileError(f"line {line}: stage name {name} used twice")
                names.add(name)
            elif len(args) == 1:
                name = None
            else:
                raise DockerfileError(f"line {line}: FROM image [AS name]")
            stages.append(Stage(len(stages), args[0], name))
        elif keyword == "ARG" and not stages:
            continue  # global ARGs before the first FROM
        if keyword in ("COPY", "ADD") and len(instr.args) < 2:
            raise DockerfileError(f"line {line}: {keyword} needs a source and a destination")
        stages[-1].instructions.append(instr)
    if not stages:
        raise DockerfileError("no FROM instruction")
    return stages


def shell_text(instr):
    """The shell command of a shell-form RUN/CMD, as the shell would receive it."""
    if instr.json_form:
        raise DockerfileError(f"line {instr.line}: {instr.keyword} is in exec form")
    return instr.text


def apt_packages(run_args):
    """The packages named by every `apt-get install` in a RUN's shell text."""
    text = " ".join(run_args)
    packages = []
    for command in re.split(r"&&|;|\|\|", text):
        words = command.split()
        # Skip variable assignments (DEBIAN_FRONTEND=...) in front of the command.
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words.pop(0)
        if len(words) >= 2 and words[0] in ("apt-get", "apt") and words[1] == "install":
            packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def dockerignore_patterns(text):
    """(pattern, exclude?) pairs from a .dockerignore, in order."""
    patterns = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = line.strip("/")
        patterns.append((line, not negate))
    return patterns


def _match(pattern, path):
    """Docker's matching: filepath.Match per component, with ** for any number of them."""
    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"  # any number of directories, none included
            i += 3
            continue
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
            continue
        if c == "*":
            regex += "[^/]*"
        elif c == "?":
            regex += "[^/]"
        else:
            regex += re.escape(c)
        i += 1
    return re.fullmatch(regex, path) is not None


def ignored(patterns, path):
    """Whether the build context leaves `path` (relative, with /) out. As Docker: the last
    pattern that matches the path or one of its parent directories decides."""
    path = path.strip("/")
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for pattern, exclude in patterns:
        if any(_match(pattern, p) for p in prefixes):
            result = exclude
    return result
