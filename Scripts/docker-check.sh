#!/usr/bin/env bash
# Checks Docker/Dockerfile and Docker/compose.yaml without a Docker engine (none runs on our
# machines):
#   1. `docker-compose -f Docker/compose.yaml config` (Debian's docker-compose 1.29, which
#      validates a file offline) passes, with the required variables set to dummy values;
#   2. every COPY/ADD source of the Dockerfile exists in the build context compose uses, and
#      every COPY --from names an earlier stage that produces its source (a path written by
#      one of that stage's RUN commands, or under one of its COPY destinations);
#   3. the image's ENTRYPOINT is `tanhui` and the binary is copied onto PATH;
#   4. the image's CMD and every `tanhui …` a compose service runs (its command, or the
#      `tanhui` lines of a shell script) are real CLI subcommands with real options: when
#      TANHUI_BIN is set, each is checked against `$TANHUI_BIN <subcommand…> --help`;
#   5. published ports are bound to loopback, and a `--port` matches the published/health-
#      checked container port.
#
#   Scripts/docker-check.sh            (TANHUI_BIN=path/to/tanhui to check the CLI as well)
#   TANHUI_DOCKER_CHECK_ROOT=DIR Scripts/docker-check.sh   checks DIR/Docker/… instead (the
#                                      negative self-tests in Scripts/check-selftest.sh use it)
#
# Needs docker-compose (Scripts/prerequisites.sh installs it); installs nothing. Exit 0 and a last
# line `docker-check: ok` on success; 1 with a message per problem otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "${TANHUI_DOCKER_CHECK_ROOT:-$root}" && pwd)"
cd "$root"
compose_file=Docker/compose.yaml

die() { echo "docker-check: $*" >&2; exit 1; }

[ -f "$compose_file" ] || die "$compose_file not found"
[ -f Docker/Dockerfile ] || die "Docker/Dockerfile not found"

command -v docker-compose >/dev/null 2>&1 ||
  die "docker-compose is not installed; run Scripts/prerequisites.sh (or: sudo apt-get install -y docker-compose)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Required variables (`${NAME:?message}`) get dummy values, read from the file so the two
# never drift; real secrets in the caller's environment are never used or printed.
required_vars=()
while IFS= read -r name; do required_vars+=("$name=docker-check-dummy"); done < <(
  grep -o '\${[A-Za-z_][A-Za-z0-9_]*:?' "$compose_file" | sed 's/^\${//; s/:?$//' | sort -u)

if ! env "${required_vars[@]}" docker-compose -f "$compose_file" config >"$work/config.yaml" 2>"$work/config.err"; then
  cat "$work/config.err" >&2
  die "docker-compose -f $compose_file config failed"
fi
echo "docker-check: docker-compose config passed ($(docker-compose version --short 2>/dev/null || echo '?'))"

python3 - "$root" "$work/config.yaml" <<'PY'
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import yaml  # python3-yaml: a dependency of Debian's docker-compose

root, config_path = sys.argv[1], sys.argv[2]
problems = []
notes = []


def problem(message):
    problems.append(message)


with open(config_path, encoding="utf-8") as f:
    config = yaml.safe_load(f)
services = config.get("services") or {}


# ---------------------------------------------------------------- Dockerfile parsing
def instructions(path):
    """Yields (keyword, rest) per instruction, continuation lines joined, comments dropped."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    current = ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        yield keyword.upper(), rest.strip()
        current = ""
    if current.strip():
        keyword, _, rest = current.strip().partition(" ")
        yield keyword.upper(), rest.strip()


def exec_form(rest):
    """JSON array form → list, else None."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def copy_parts(rest):
    """COPY/ADD arguments → (flags dict, sources, destination)."""
    flags, text = {}, rest
    while True:
        match = re.match(r"--([\w-]+)(?:=(\S*))?\s+", text)
        if not match:
            break
        flags[match.group(1)] = match.group(2) or ""
        text = text[match.end():]
    words = exec_form(text) if text.startswith("[") else shlex.split(text)
    if not words or len(words) < 2:
        return flags, [], None
    return flags, words[:-1], words[-1]


def produces(stage, source):
    """Whether `stage` writes the absolute path `source`: a RUN names it, or it lies under a
    COPY/ADD destination or the WORKDIR-relative destination of that stage."""
    source = os.path.normpath(source)
    for destination in stage["outputs"]:
        if source == destination or source.startswith(destination.rstrip("/") + "/"):
            return True
    return re.search(r"(?<![\w./-])" + re.escape(source) + r"(?![\w.-])", stage["runs"]) is not None


def check_dockerfile(dockerfile, context):
    rel = os.path.relpath(dockerfile, root)
    stages = []  # per stage: name (lower-case or None), RUN text, paths its COPY/ADD wrote
    final = {}
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2].lower() if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "runs": "", "outputs": [], "workdir": "/"})
            final = {"copies": []}
        elif keyword == "WORKDIR" and stages:
            stages[-1]["workdir"] = os.path.normpath(os.path.join(stages[-1]["workdir"], rest.strip()))
        elif keyword == "RUN" and stages:
            stages[-1]["runs"] += rest + "\n"
        elif keyword in ("COPY", "ADD"):
            flags, sources, dest = copy_parts(rest)
            if dest is None:
                problem(f"{rel}: cannot parse `{keyword} {rest}`")
                continue
            final["copies"].append((flags, sources, dest))
            if stages:
                stages[-1]["outputs"].append(os.path.normpath(os.path.join(stages[-1]["workdir"], dest)))
            source_stage = flags.get("from")
            if source_stage is not None:
                earlier = stages[:-1]
                match = next((s for s in earlier if s["name"] == source_stage.lower()), None)
                if match is None and source_stage.isdigit() and int(source_stage) < len(earlier):
                    match = earlier[int(source_stage)]
                if match is None:
                    problem(f"{rel}: `{keyword} --from={source_stage}` names no earlier stage")
                    continue
                for source in sources:
                    path = source if source.startswith("/") else os.path.join(match["workdir"], source)
                    if not produces(match, path):
                        problem(f"{rel}: `{keyword} --from={source_stage} {source}`: stage {source_stage} never writes {path}")
                continue
            for source in sources:
                if keyword == "ADD" and re.match(r"^[a-z]+://", source):
                    continue  # remote source: nothing to check locally
                path = os.path.normpath(os.path.join(context, source))
                if not (path + os.sep).startswith(os.path.normpath(context) + os.sep) and path != os.path.normpath(context):
                    problem(f"{rel}: {keyword} source {source!r} lies outside the build context")
                elif any(c in source for c in "*?["):
                    if not glob.glob(path):
                        problem(f"{rel}: {keyword} source {source!r} matches nothing in {context}")
                elif not os.path.exists(path):
                    problem(f"{rel}: {keyword} source {source!r} does not exist in {context}")
        elif keyword in ("ENTRYPOINT", "CMD", "HEALTHCHECK", "EXPOSE"):
            final[keyword] = rest
    if not stages:
        problem(f"{rel}: no FROM instruction")
    return final


# ---------------------------------------------------------------- which services use the image
builds = {}
tanhui_images = set()
for name, service in services.items():
    build = service.get("build")
    if isinstance(build, dict):
        context = build.get("context", ".")
        dockerfile = os.path.normpath(os.path.join(context, build.get("dockerfile", "Dockerfile")))
        builds[name] = (context, dockerfile)
        if service.get("image"):
            tanhui_images.add(service["image"])

ours = os.path.join(root, "Docker", "Dockerfile")
contexts = {c for c, d in builds.values() if os.path.normpath(d) == ours}
if not contexts:
    problem("no compose service builds Docker/Dockerfile")
for context, dockerfile in sorted(set(builds.values())):
    if os.path.normpath(dockerfile) != ours:
        problem(f"a compose service builds {dockerfile}, expected Docker/Dockerfile")
if len(contexts) > 1:
    problem(f"compose builds Docker/Dockerfile with different contexts: {sorted(contexts)}")

image = check_dockerfile(ours, sorted(contexts)[0] if contexts else root)

# ---------------------------------------------------------------- ENTRYPOINT / CMD
entrypoint = exec_form(image.get("ENTRYPOINT", ""))
if not entrypoint:
    problem("Dockerfile: final stage needs an exec-form ENTRYPOINT, e.g. [\"tanhui\"]")
elif os.path.basename(entrypoint[0]) != "tanhui":
    problem(f"Dockerfile: ENTRYPOINT runs {entrypoint[0]!r}, expected the tanhui binary")
else:
    path_dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    installed = False
    for flags, sources, dest in image.get("copies", []):
        if dest.endswith("/"):
            targets = [dest + os.path.basename(s) for s in sources]
        else:
            targets = [dest]
        for target in targets:
            if entrypoint[0].startswith("/"):
                installed |= target == entrypoint[0]
            else:
                installed |= os.path.basename(target) == "tanhui" and os.path.dirname(target) in path_dirs
    if not installed:
        problem(f"Dockerfile: final stage copies no {entrypoint[0]!r} onto PATH")

default_cmd = exec_form(image.get("CMD", ""))
if default_cmd is None:
    problem("Dockerfile: final stage needs an exec-form CMD")
    default_cmd = []

healthcheck = image.get("HEALTHCHECK", "")
if "/readyz" not in healthcheck:
    problem("Dockerfile: HEALTHCHECK should probe /readyz")
health_port = re.search(r"//(?:127\.0\.0\.1|localhost)(?::(\d+))?/readyz", healthcheck)
health_port = (health_port.group(1) or "80") if health_port else None


def option_value(args, name):
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


invocations = [("Dockerfile CMD", default_cmd)]  # (where, tanhui arguments)
cmd_port = option_value(default_cmd, "--port")
if health_port and cmd_port and health_port != cmd_port:
    problem(f"Dockerfile: HEALTHCHECK probes port {health_port} but CMD serves on {cmd_port}")

# ---------------------------------------------------------------- compose services
SHELLS = {"sh", "bash", "dash", "ash"}


def tanhui_lines(script):
    """The argument lists of `tanhui …` simple commands in a shell script."""
    found = []
    for line in script.splitlines():
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
        except ValueError:
            continue
        command = []
        for token in tokens + [";"]:
            if token and set(token) <= set(";&|()<>"):
                while command and command[0] in ("exec", "then", "do", "else", "!", "time"):
                    command.pop(0)
                if command and os.path.basename(command[0]) == "tanhui":
                    found.append(command[1:])
                command = []
            else:
                command.append(token)
    return found


for name, service in sorted(services.items()):
    uses_image = name in builds or service.get("image") in tanhui_images
    for port in service.get("ports") or []:
        text = port if isinstance(port, str) else json.dumps(port)
        host_ip = port.get("host_ip") if isinstance(port, dict) else (text.split(":")[0] if text.count(":") >= 2 else "")
        if host_ip not in ("127.0.0.1", "::1", "[::1]", "localhost"):
            problem(f"compose service {name}: port {text} is not bound to loopback (use 127.0.0.1:HOST:CONTAINER)")
    if not uses_image:
        continue
    command = service.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    service_entrypoint = service.get("entrypoint")
    if isinstance(service_entrypoint, str):
        service_entrypoint = shlex.split(service_entrypoint)
    where = f"compose service {name}"
    if not service_entrypoint:
        args = command if command is not None else default_cmd
        invocations.append((where, args))
        found = [args]
    elif os.path.basename(service_entrypoint[0]) == "tanhui":
        found = [service_entrypoint[1:] + (command or [])]
        invocations.append((where, found[0]))
    elif os.path.basename(service_entrypoint[0]) in SHELLS:
        script = " ".join(service_entrypoint[1:] + (command or []))
        found = tanhui_lines(script.replace("$$", "$"))
        if not found:
            problem(f"{where}: runs the tanhui image through a shell but never calls tanhui")
        invocations.extend((where, args) for args in found)
    else:
        problem(f"{where}: entrypoint {service_entrypoint[0]!r} is neither tanhui nor a shell")
        found = []
    # A served port must be the one published and health-checked.
    targets = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            targets.add(str(port.get("target")))
        else:
            targets.add(str(port).split("/")[0].split(":")[-1])
    for args in found:
        port = option_value(args, "--port")
        if port and targets and port not in targets:
            problem(f"{where}: serves on --port {port} but publishes container port(s) {sorted(targets)}")
        if port and health_port and port != health_port and "healthcheck" not in service:
            problem(f"{where}: serves on --port {port} but the image HEALTHCHECK probes {health_port}")

# ---------------------------------------------------------------- against the real CLI
binary = os.environ.get("TANHUI_BIN")
help_cache = {}


def help_of(words):
    key = tuple(words)
    if key not in help_cache:
        result = subprocess.run([binary, *words, "--help"], capture_output=True, text=True, timeout=60)
        help_cache[key] = (result.returncode, result.stdout + result.stderr)
    return help_cache[key]


def usage_line(text):
    match = re.search(r"^USAGE:\s*(.*)$", text, re.M)
    return match.group(1).strip() if match else ""


if binary:
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        problem(f"TANHUI_BIN={binary} is not an executable file")
    else:
        for where, args in invocations:
            # Leading words up to the first option may be subcommands or positional
            # arguments: the longest prefix whose help names exactly that command is the
            # subcommand (ArgumentParser prints the parent's help for unknown words).
            words = []
            for arg in args:
                if arg.startswith("-"):
                    break
                words.append(arg)
            leaf, text = None, ""
            for k in range(len(words), 0, -1):
                code, output = help_of(words[:k])
                usage = usage_line(output)
                expected = "tanhui " + " ".join(words[:k])
                if code == 0 and (usage == expected or usage.startswith(expected + " ")):
                    leaf, text = words[:k], output
                    break
            shown = "tanhui " + " ".join(args)
            if leaf is None:
                problem(f"{where}: `{shown}`: no such tanhui subcommand")
                continue
            if "<subcommand>" in usage_line(text):
                if len(words) > len(leaf):
                    problem(f"{where}: `{shown}`: `tanhui {' '.join(leaf)}` has no subcommand "
                            f"{words[len(leaf)]!r}")
                else:
                    problem(f"{where}: `{shown}`: `tanhui {' '.join(leaf)}` needs a subcommand")
                continue
            for arg in args:
                if arg.startswith("--"):
                    option = arg.split("=", 1)[0]
                    if not re.search(r"(^|[\s,\[])" + re.escape(option) + r"(?![\w-])", text, re.M):
                        problem(f"{where}: `{shown}`: `tanhui {' '.join(leaf)}` has no option {option}")
            notes.append(f"`tanhui {' '.join(leaf)}` ({where})")
else:
    notes.append("TANHUI_BIN not set: subcommands were not checked against the CLI")

for note in notes:
    print(f"docker-check: checked {note}" if note.startswith("`") else f"docker-check: note: {note}")
if problems:
    for message in problems:
        print(f"docker-check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)
PY

echo "docker-check: ok"
