"""No test process forks: fails naming file:line for each place in the project's Python (tests,
benchmarks, and the Python embedded in scripts/*.sh) that would fork(2) a process which may run
gRPC's threads.

Why: grpcio builds gRPC core with fork support on, so core installs a pthread_atfork handler that
joins gRPC's executor threads before every fork(2); that join can wait for ever (issue 15: a
PostgreSQL wire test hung in fork() inside subprocess.run(preexec_fn=...) about once in 50 runs).
vfork(2) runs no such handler, and Python's subprocess uses it unless it is given preexec_fn, user,
group or extra_groups (CPython 3.11, Modules/_posixsubprocess.c). So the rule is: none of those
four, no os.fork/os.forkpty/pty.fork, no multiprocessing; run a command as another user with
setpriv(1).

usage: check_no_fork.py SOURCE_DIR   (exit 0: clean; 1: findings, one per line)
"""

import ast
import os
import re
import sys

FORKING_KEYWORDS = {"preexec_fn", "user", "group", "extra_groups"}
SUBPROCESS_CALLS = {"Popen", "run", "call", "check_call", "check_output"}
FORK_CALLS = {("os", "fork"), ("os", "forkpty"), ("pty", "fork")}
FORBIDDEN_MODULES = {"multiprocessing"}
# Python run from shell scripts: `python3 - <<'EOF'` or `cat > x.py <<'EOF'` bodies.
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?[^\n]*\n(.*?)\n\1\n", re.S)


def _dotted(node):
    """a.b.c for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def findings_in(tree):
    """(line, what) for each forking construct in an ast."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func) or ""
            tail = name.rsplit(".", 1)
            if len(tail) == 2 and tuple(tail) in FORK_CALLS:
                out.append((node.lineno, "%s() forks" % name))
            if name.split(".")[-1] in SUBPROCESS_CALLS and (
                    name.startswith("subprocess.") or "." not in name):
                for kw in node.keywords:
                    if kw.arg is None:
                        out.append((node.lineno, "%s(**...): arguments this check cannot see; "
                                    "pass them by name" % name))
                    elif kw.arg in FORKING_KEYWORDS and not (
                            isinstance(kw.value, ast.Constant) and kw.value.value is None):
                        out.append((node.lineno, "%s(%s=...) makes subprocess fork instead of "
                                    "vfork; use setpriv(1) for another user" % (name, kw.arg)))
        elif isinstance(node, ast.Constant) and node.value in FORKING_KEYWORDS - {"user", "group"}:
            out.append((node.lineno, "%r: a forking subprocess argument built at run time" %
                        node.value))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                if m.split(".")[0] in FORBIDDEN_MODULES:
                    out.append((node.lineno, "imports %s, which forks" % m))
    return out


def sources(root):
    for top in ("tests", "bench", "scripts"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames[:] = [d for d in dirnames if d not in ("node_modules", "corpus", ".stubs")]
            for f in sorted(filenames):
                path = os.path.join(dirpath, f)
                if os.path.abspath(path) == os.path.abspath(__file__):
                    continue  # names the forbidden arguments, calls none
                if f.endswith(".py"):
                    with open(path, encoding="utf-8") as fh:
                        yield path, 0, fh.read()
                elif f.endswith(".sh"):
                    with open(path, encoding="utf-8") as fh:
                        text = fh.read()
                    for m in HEREDOC.finditer(text):
                        yield path, text.count("\n", 0, m.start(2)), m.group(2)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root = os.path.abspath(argv[1])
    bad, python_files = [], 0
    for path, offset, text in sources(root):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            if offset:
                continue  # a heredoc that is not Python
            raise
        python_files += 1
        for line, what in findings_in(tree):
            bad.append("%s:%d: %s" % (os.path.relpath(path, root), line + offset, what))
    if python_files < 10:
        print("check_no_fork: only %d Python sources found under %s: wrong directory?" %
              (python_files, root), file=sys.stderr)
        return 1
    for b in bad:
        print(b)
    print("check_no_fork: %d Python sources, %d forking call(s)" % (python_files, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
