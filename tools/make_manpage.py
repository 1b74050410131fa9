#!/usr/bin/python3
"""Write the man page aetrain.1 from the binary's own help texts and hand-written sections.

    tools/make_manpage.py --aetrain build/aetrain --template tools/aetrain.1.in \\
        --version 0.1.0 --out build/aetrain.1

Runs `aetrain --help` and `aetrain SUBCOMMAND --help` for every subcommand that `--help` lists
(aetrain runs as a one-process MPI program, no mpirun needed), and fills the template's
@SYNOPSIS@, @OPTIONS@ (the options of aetrain itself) and @COMMANDS@ (one subsection per
subcommand, every option with its type, allowed values and default), @VERSION@ and @DATE@
(SOURCE_DATE_EPOCH if set, else today). Reads the help layouts of CLI11 2.1 (Debian 12), 2.4
(Debian 13) and later. The build runs it whenever the binary changes, so the page says what
the binary does.
"""
import argparse
import datetime
import os
import re
import subprocess
import sys

# A line of a help section: an item when indented less than this, else the continuation of the
# item's description (CLI11 puts descriptions in column 30; names start in column 2 to 10).
ITEM_INDENT_MAX = 16
SECTION = re.compile(r"^([A-Za-z]+):\s*$")
OPTION_HEAD = re.compile(r"^(?:(-\w),\s*)?(--?\w[\w-]*)(?:\s+(.*))?$")
POSITIONAL_HEAD = re.compile(r"^(\w[\w-]*)(?:\s+(.*))?$")
# A long or short option in running text, not already escaped or inside a word.
OPTION_IN_TEXT = re.compile(r"(?<![\w\\-])(--?[A-Za-z][\w-]*)")


def run_help(aetrain, args):
    """The text `aetrain ARGS` prints on stdout; fails loudly unless it exits 0."""
    done = subprocess.run([aetrain] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        sys.exit(f"make_manpage.py: {aetrain} {' '.join(args)} exited with {done.returncode}:\n"
                 f"{done.stdout}{done.stderr}")
    return done.stdout


def parse_help(text):
    """CLI11's help: {"description": str, "sections": {"options": [item], ...}}, where an item
    is {"head": "--epochs INT:INT>=1=1", "description": "..."}."""
    lines = text.splitlines()
    description = ""
    for line in lines:
        if line.strip():
            if not line.startswith("Usage:"):
                description = line.strip()
            break
    sections, items = {}, None
    for line in lines:
        if not line.strip():
            continue
        m = SECTION.match(line)
        if m:
            items = sections.setdefault(m.group(1).lower(), [])
            continue
        if items is None:
            continue  # the description and usage lines
        indent = len(line) - len(line.lstrip())
        if indent < ITEM_INDENT_MAX:
            parts = re.split(r"\s{2,}", split_head(line.strip()), maxsplit=1)
            items.append({"head": parts[0], "description": parts[1].strip() if parts[1:] else ""})
        elif items:
            items[-1]["description"] = (items[-1]["description"] + " " + line.strip()).strip()
    return {"description": description, "sections": sections}


def split_head(head):
    """'-h,     --help' -> '-h,--help'; then the first run of two spaces ends the head."""
    return re.sub(r"^(-\w),\s+", r"\1,", head)


def parse_item(item):
    """An option or positional item -> names, type, allowed values, default, repeats."""
    head = item["head"]
    m = OPTION_HEAD.match(head)
    if m:
        names = [n for n in (m.group(1), m.group(2)) if n]
    else:
        m = POSITIONAL_HEAD.match(head)
        if not m:
            sys.exit(f"make_manpage.py: cannot read the help line {head!r}")
        names = [m.group(1)]
    spec = (m.groups()[-1] or "").strip()
    repeats = False
    if spec.endswith("..."):  # CLI11: "INT ..." (2.1), "INT,... ..." (2.7)
        repeats = True
        spec = re.sub(r"(,\.\.\.)?\s*\.\.\.$", "", spec).strip()
    default = None
    m = re.search(r"\s*\[([^\[\]]*)\]$", spec)  # CLI11 2.4 and later: "TEXT [/train]"
    if m:
        default, spec = m.group(1), spec[:m.start()]
    else:  # CLI11 2.1: "TEXT=/train", "INT:INT>=1=1" (an '=' not part of >=, <=, !=, ==)
        m = re.search(r"(?<![<>!=])=(?!=)([^=]*)$", spec)
        if m:
            default, spec = m.group(1), spec[:m.start()]
    kind, _, allowed = spec.partition(":")
    return {"names": names, "type": kind.strip(), "allowed": allowed.strip(),
            "default": default, "repeats": repeats, "description": item["description"]}


def escape_options(line):
    """Every option in the line as \\-\\-name, its word unhyphenated: \\% must open the
    word (inside one it would mark a hyphenation point), so it goes before "(--x)" whole."""
    def word(m):
        w = m.group(0)
        escaped = OPTION_IN_TEXT.sub(lambda o: o.group(1).replace("-", "\\-"), w)
        return w if escaped == w else "\\%" + escaped
    return re.sub(r"[^\s\"]+", word, line)


def roff_text(text):
    """Running text for roff: backslashes kept visible, options as \\-\\-name, unhyphenated,
    no line taken for a request."""
    text = escape_options(text.replace("\\", "\\e"))
    text = re.sub(r"(?<=\s)-(?=\s)", r"\\-", text)  # a minus sign: "a - b"
    return "\\&" + text if text[:1] in (".", "'") else text


def roff_literal(text):
    """A value to show as typed (a default, a range): every dash a minus, no hyphenation."""
    return "\\%" + text.replace("\\", "\\e").replace("-", "\\-")


def sentence(text):
    text = text.strip()
    if text and text[-1] not in ".!?)":
        text += "."
    return text


def allowed_values(allowed):
    """'{relu,sigmoid}' -> ['relu', 'sigmoid']; anything else -> None."""
    m = re.fullmatch(r"\{(.*)\}", allowed)
    return m.group(1).split(",") if m else None


def render_item(item, positional=False):
    """One .TP entry."""
    out = [".TP"]
    if positional:
        tag = "\\fI" + roff_literal(item["names"][0]) + "\\fR"
    else:
        tag = ", ".join("\\fB" + roff_literal(n) + "\\fR" for n in item["names"])
        choices = allowed_values(item["allowed"])
        if choices:
            tag += " " + "|".join("\\fI" + roff_literal(c) + "\\fR" for c in choices)
        elif item["type"]:
            tag += " \\fI" + roff_literal(item["type"]) + "\\fR"
            if item["repeats"]:
                tag += " ..."
    out.append(tag)
    out.append(roff_text(sentence(item["description"]) or "(no description)"))
    notes = []
    if item["allowed"] and not allowed_values(item["allowed"]):
        m = re.fullmatch(r"(?:INT|UINT|FLOAT)?\s*>=\s*(\S+)", item["allowed"])
        if m:
            notes.append(("Each at least " if item["repeats"] else "At least ")
                         + roff_literal(m.group(1)) + ".")
        else:
            notes.append(("Each in " if item["repeats"] else "Values in ")
                         + roff_literal(item["allowed"]) + ".")
    if item["default"] not in (None, ""):
        notes.append("Default: " + roff_literal(item["default"]) + ".")
    if notes:
        out.append(".br")
        out.append(" ".join(notes))
    return out


def synopsis(commands):
    out = []
    first = True
    for name, help_ in commands:
        if not first:
            out.append(".br")
        first = False
        line = f"\\fBaetrain {name}\\fR [\\fIOPTIONS\\fR]"
        for p in help_["sections"].get("positionals", []):
            line += " \\fI" + roff_literal(parse_item(p)["names"][0]) + "\\fR"
        out.append(line)
    out += [".br", "\\fBmpirun \\-n\\fR \\fIP\\fR \\fBaetrain\\fR \\fISUBCOMMAND\\fR [\\fIOPTIONS\\fR]",
            ".br", "\\fBaetrain\\fR [\\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR]",
            ".br", "\\fBaetrain\\fR \\fISUBCOMMAND\\fR \\fB\\-\\-help\\fR"]
    return out


def option_items(help_):
    """The items of every section that lists options: "Options:" and any option group's."""
    return [item for name, items in help_["sections"].items()
            if name not in ("positionals", "subcommands") for item in items]


def options_section(main_help):
    out = []
    for item in option_items(main_help):
        out += render_item(parse_item(item))
    return out


def commands_section(main_help, commands):
    summary = {parse_item(i)["names"][0]: i["description"]
               for i in main_help["sections"].get("subcommands", [])}
    out = []
    for name, help_ in commands:
        out.append(f'.SS "aetrain {name}"')
        out.append(roff_text(sentence(summary.get(name) or help_["description"])))
        for item in help_["sections"].get("positionals", []):
            out += render_item(parse_item(item), positional=True)
        for item in option_items(help_):
            out += render_item(parse_item(item))
    return out


def fill_template(template, values):
    """@KEY@ on a line of its own becomes a block; inline @KEY@ becomes its value. Options in
    the hand-written text are escaped like the generated ones."""
    out = ['.\\" Made by tools/make_manpage.py from tools/aetrain.1.in and the help texts of aetrain',
           '.\\" itself: edit those, not this file.']
    lines = template.splitlines()
    while lines and lines[0].startswith('.\\"'):  # the template's own header comment
        lines.pop(0)
    for line in lines:
        key = line.strip()
        if key.startswith("@") and key.endswith("@") and isinstance(values.get(key), list):
            out += values[key]
            continue
        for k, v in values.items():
            if isinstance(v, str):
                line = line.replace(k, v)
        if not line.startswith('.\\"'):
            line = escape_options(line)
        out.append(line)
    left = re.findall(r"@[A-Z_]+@", "\n".join(out))
    if left:
        sys.exit(f"make_manpage.py: the template has unknown placeholders {sorted(set(left))}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aetrain", required=True, help="the aetrain binary")
    ap.add_argument("--template", required=True, help="tools/aetrain.1.in")
    ap.add_argument("--version", required=True, help="the project's version")
    ap.add_argument("--out", required=True, help="the man page to write")
    args = ap.parse_args()

    main_help = parse_help(run_help(args.aetrain, ["--help"]))
    names = [parse_item(i)["names"][0] for i in main_help["sections"].get("subcommands", [])]
    if not names:
        sys.exit(f"make_manpage.py: `{args.aetrain} --help` lists no subcommands")
    commands = [(name, parse_help(run_help(args.aetrain, [name, "--help"]))) for name in names]

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date()
            if epoch else datetime.date.today())
    with open(args.template) as f:
        template = f.read()
    page = fill_template(template, {
        "@VERSION@": args.version,
        "@DATE@": date.isoformat(),
        "@SYNOPSIS@": synopsis(commands),
        "@OPTIONS@": options_section(main_help),
        "@COMMANDS@": commands_section(main_help, commands),
    })
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(page)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
