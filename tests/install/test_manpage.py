#!/usr/bin/python3
"""The man page says what the binary does, and renders cleanly.

    tests/install/test_manpage.py AETRAIN PAGE.1 ERROR_HEADER

- groff renders PAGE.1 with every warning on (-ww) and prints none;
- its COMMANDS section has one subsection per subcommand that `AETRAIN --help` lists (train,
  encode, evaluate, pca and inspect at least), and each lists exactly the options and
  positionals that `AETRAIN SUB --help` prints; OPTIONS lists those of `AETRAIN --help`;
- every long option named anywhere on the page is one that aetrain has;
- EXIT STATUS lists exactly the codes of enum ExitCode in ERROR_HEADER (include/aetrain/error.hpp).

The help texts are read here on their own terms (not by tools/make_manpage.py's parser), and
the page is read as groff renders it for a reader.
"""
import re
import shutil
import subprocess
import sys

KNOWN_SUBCOMMANDS = {"train", "encode", "evaluate", "pca", "inspect"}
LONG_OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def run(args):
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)
    if done.returncode != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited with {done.returncode}:\n{done.stderr}")
    return done.stdout, done.stderr


def help_entries(text):
    """{section: set of names} from a CLI11 help text: the first word of each entry line (an
    entry starts left of the description column; "-h,     --help" is two names)."""
    entries, section = {}, None
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+):\s*$", line)
        if m:
            section = entries.setdefault(m.group(1).lower(), set())
            continue
        if section is None or not line.strip() or len(line) - len(line.lstrip()) >= 16:
            continue
        first = re.sub(r"^(-\w),\s+", r"\1,", line.strip()).split()[0]
        section.update(first.split(","))
    # Options may also stand in sections of their own (CLI11's option groups).
    entries["options"] = set().union(*(names for name, names in entries.items()
                                       if name not in ("positionals", "subcommands")))
    return entries


def render(page, device):
    groff = shutil.which("groff")
    if not groff:
        sys.exit("FAIL: groff is missing (Debian: groff-base, installed by tools/install-deps.sh)")
    return run([groff, "-man", "-ww", f"-T{device}", "-P-cbou", page])


def page_structure(text):
    """{section: {subsection or "": {"options": set, "positionals": set}}} of the rendered
    page, from the .TP labels: lines indented 7 that follow a blank line or a section heading
    (a subsection heading is followed by its one-line summary, not by a label)."""
    sections, section, sub = {}, None, ""
    lines = text.splitlines()
    after_heading = False
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z ]+$", line):
            section, sub, after_heading = line.strip(), "", True
            sections[section] = {"": {"options": set(), "positionals": set()}}
            continue
        label_here, after_heading = after_heading or not lines[i - 1].strip(), False
        if section is None:
            continue
        m = re.match(r"^ {3}(\S.*)$", line)
        if m:
            sub = m.group(1).strip()
            sections[section][sub] = {"options": set(), "positionals": set()}
            continue
        if re.match(r"^ {7}\S", line) and label_here:
            entry = sections[section][sub]
            m = re.match(r"^ {7}((?:-\w, )?--?[\w-]+)", line)
            if m:
                entry["options"].update(m.group(1).split(", "))
            else:
                entry["positionals"].add(line.split()[0])
    return sections


def main():
    aetrain, page, error_header = sys.argv[1:4]

    _, warnings = render(page, "utf8")
    check(not warnings.strip(), f"groff -ww warns about {page}:\n{warnings}")
    text, _ = render(page, "ascii")
    sections = page_structure(text)
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS",
                 "ENVIRONMENT", "FILES", "EXAMPLES"):
        check(name in sections, f"the page has no {name} section")

    main_help = help_entries(run([aetrain, "--help"])[0])
    subcommands = main_help.get("subcommands", set())
    check(KNOWN_SUBCOMMANDS <= subcommands,
          f"`aetrain --help` lists the subcommands {sorted(subcommands)}, "
          f"not all of {sorted(KNOWN_SUBCOMMANDS)}")
    all_options = set(o for o in main_help.get("options", set()) if o.startswith("--"))
    if check("OPTIONS" in sections, "no OPTIONS section"):
        got = sections["OPTIONS"][""]["options"]
        check(got == main_help.get("options", set()),
              f"OPTIONS lists {sorted(got)}, `aetrain --help` {sorted(main_help.get('options'))}")
    commands = sections.get("COMMANDS", {})
    documented = {s.split()[1] for s in commands if s.startswith("aetrain ")}
    check(documented == subcommands,
          f"COMMANDS has subsections for {sorted(documented)}, the binary has {sorted(subcommands)}")
    checked = 0
    for sub in sorted(subcommands):
        entries = help_entries(run([aetrain, sub, "--help"])[0])
        want_options = entries.get("options", set())
        want_positionals = entries.get("positionals", set())
        all_options |= {o for o in want_options if o.startswith("--")}
        check(want_options, f"`aetrain {sub} --help` lists no options (unreadable help?)")
        got = commands.get(f"aetrain {sub}")
        if not check(got is not None, f"no subsection `aetrain {sub}`"):
            continue
        check(got["options"] == want_options,
              f"aetrain {sub}: options in --help but not on the page "
              f"{sorted(want_options - got['options'])}, on the page but not in --help "
              f"{sorted(got['options'] - want_options)}")
        check(got["positionals"] == want_positionals,
              f"aetrain {sub}: the page's positionals {sorted(got['positionals'])}, --help's "
              f"{sorted(want_positionals)}")
        checked += len(want_options)

    named = set(LONG_OPTION.findall(text))
    check(named - all_options == set(),
          f"the page names options aetrain lacks: {sorted(named - all_options)}")

    with open(error_header) as f:
        enum = re.search(r"enum class ExitCode[^{]*\{(.*?)\}", f.read(), re.S)
    codes = set(re.findall(r"=\s*(\d+)", enum.group(1))) if enum else set()
    check(codes, f"no enum ExitCode values in {error_header}")
    exit_status = {tag for tag in sections.get("EXIT STATUS", {}).get("", {}).get("positionals", ())
                   if tag.isdigit()}
    check(exit_status == codes,
          f"EXIT STATUS lists {sorted(exit_status, key=int)}, enum ExitCode has "
          f"{sorted(codes, key=int)}")

    for f in failures:
        print("FAIL:", f)
    print(f"man page {page}: {len(documented)} subcommands, {checked} subcommand options, "
          f"{len(named)} distinct options named, exit codes {sorted(codes, key=int)}: "
          + ("FAILED" if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
