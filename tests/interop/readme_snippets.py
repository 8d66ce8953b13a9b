"""The README's "Clients" snippets are tested code: every code line of each fenced block in that
section (comments and blank lines aside) must be a line of that language's interop client, which
ctest -L interop runs against the real server. Indentation is ignored, so a snippet may indent a
line differently from the client. Usage: readme_snippets.py README.md TESTS_INTEROP_DIR."""

import os
import re
import sys

CLIENTS = {  # fence language -> (client file, comment prefix)
    "cpp": ("cpp/client.cc", "//"),
    "go": ("go/client.go", "//"),
    "java": ("java/Client.java", "//"),
    "js": ("node/client.js", "//"),
    "python": ("python/client.py", "#"),
}


def main(readme, interop_dir):
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"^## Clients\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        sys.exit("readme_snippets: README has no \"## Clients\" section")
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", m.group(1), re.M | re.S)
    problems, seen = [], set()
    for lang, body in blocks:
        if lang not in CLIENTS:
            problems.append("a ```%s block: no interop client in that language" % lang)
            continue
        seen.add(lang)
        path, comment = CLIENTS[lang]
        with open(os.path.join(interop_dir, path), encoding="utf-8") as f:
            client_lines = {line.strip() for line in f}
        for line in body.splitlines():
            code = line.strip()
            if not code or code.startswith(comment):
                continue
            if code not in client_lines:
                problems.append("%s: %r is not a line of tests/interop/%s" % (lang, code, path))
    for lang in sorted(set(CLIENTS) - seen):
        problems.append("no ```%s snippet in the Clients section" % lang)
    for p in problems:
        print("readme_snippets: " + p)
    print("readme_snippets: %d snippets checked, %d problems" % (len(blocks), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
