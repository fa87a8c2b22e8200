#!/usr/bin/env python3
"""Man pages generated from the CLI itself: oomguard(1) from `oomguard --help` and `--version`, and
oomguard-SUB(1) from `oomguard SUB --help` for each subcommand the main help lists. The help text is
the one source; a new option shows up here without an edit. Each page also carries the files, signals
and exit codes that the help cannot say.

Usage: scripts/manpages.py OOMGUARD_BINARY OUTPUT_DIR   (writes OUTPUT_DIR/*.1.gz, as gzip -9n would:
no name, no time stamp, so the same help gives the same bytes)"""
import datetime
import gzip
import os
import re
import subprocess
import sys

SECTIONS = {
    "run": """.SH SIGNALS
.TP
.B SIGHUP
Re-reads the config file; a bad one is refused with a logged reason and the old one stays in force.
.TP
.B SIGUSR1
Logs the watch set and the daemon's counters.
.TP
.BR SIGTERM ", " SIGINT
Stops: restores every memory.high it set, logs its state, exits 0.
.SH SERVICE
Under systemd (Type=notify) it sends READY=1 once every OOM domain has been ranked, WATCHDOG=1 from its
event loop at half of WatchdogSec=, RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM.
Its log is JSON lines on standard output:
.B journalctl -u oomguard -o cat -f
follows it.
.SH FILES
.TP
.I /etc/oomguard/config.json
The config (observe mode as installed).
.TP
.I /etc/oomguard/act-recommended.json
The recommended config for mode act.
.TP
.I /usr/share/doc/oomguard/act.conf
The systemd drop-in that adds CAP_KILL, which mode act needs.
""",
}

EXIT = """.SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
A failure while running (a root that is not a procfs, an address in use).
.TP
.B 2
Bad usage or a bad config, refused before anything is touched; the message names the JSON path.
"""


def roff(text):
    """Plain text as roff: backslashes escaped, a leading dot or quote made literal."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n"))


def help_of(binary, args):
    result = subprocess.run([binary] + args + ["--help"], capture_output=True, text=True, check=True)
    return result.stdout


def parse(text):
    """-> (summary, usage, [(heading, [(term, description)])], subcommands)"""
    lines = text.rstrip("\n").split("\n")
    summary = re.sub(r"^oomguard: ", "", lines[0].strip())
    usage = ""
    blocks, current = [], None
    for line in lines[1:]:
        if line.startswith("Usage:"):
            usage = line[len("Usage:"):].strip()
            continue
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = (line.rstrip(":").strip(), [])
            blocks.append(current)
            continue
        if current is None:
            continue
        if line.startswith(" " * 20) and current[1]:  # a description continued on its own line
            prev_term, prev_desc = current[1][-1]
            current[1][-1] = (prev_term, (prev_desc + " " + line.strip()).strip())
            continue
        m = re.match(r"^\s{2}(\S.*?)(?:\s{2,}(\S.*))?$", line)
        if m:
            current[1].append((m.group(1), m.group(2) or ""))
    subcommands = [term.split()[0] for heading, items in blocks if heading == "Subcommands" for term, _ in items]
    return summary, usage, blocks, subcommands


def page(name, version, date, summary, usage, blocks, see_also, extra):
    out = ['.TH "%s" 1 "%s" "oomguard %s" "User Commands"' % (name.upper(), date, version),
           ".SH NAME", "%s \\- %s" % (name, roff(summary)),
           ".SH SYNOPSIS", ".B %s" % roff(re.sub(r"^\S*oomguard", "oomguard", usage))]
    for heading, items in blocks:
        out.append(".SH %s" % roff(heading.upper()))
        for term, description in items:
            out += [".TP", ".B %s" % roff(term), roff(description) if description else ""]
    out.append(extra.rstrip("\n") if extra else "")
    out.append(EXIT.rstrip("\n"))
    out += [".SH SEE ALSO", ",\n".join(".BR %s (1)" % s for s in see_also)]
    return "\n".join(line for line in out if line != "") + "\n"


def write(path, text):
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(text.encode())


def main(binary, outdir):
    os.makedirs(outdir, exist_ok=True)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    date = (datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d")
    summary, usage, blocks, subcommands = parse(help_of(binary, []))
    names = ["oomguard-%s" % s for s in subcommands]
    write(os.path.join(outdir, "oomguard.1.gz"), page("oomguard", version, date, summary, usage, blocks, names, ""))
    for sub in subcommands:
        s_summary, s_usage, s_blocks, _ = parse(help_of(binary, [sub]))
        others = ["oomguard"] + [n for n in names if n != "oomguard-%s" % sub]
        write(os.path.join(outdir, "oomguard-%s.1.gz" % sub),
              page("oomguard-%s" % sub, version, date, s_summary, s_usage, s_blocks, others, SECTIONS.get(sub, "")))
    print("manpages: %d pages in %s" % (1 + len(subcommands), outdir))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
