#!/usr/bin/env python3
"""Every module a Swift file imports is a declared dependency of its target.

SwiftPM's `--explicit-target-dependency-import-check error` (used by Scripts/test.sh) only
catches imports of this package's own targets; a product reached transitively (Yams through
TanhuiCore, say) still compiles. This check covers both, from `swift package dump-package`:

    python3 Scripts/check-imports.py [ROOT]         (default: the checkout this script is in)
    python3 Scripts/check-imports.py ROOT PACKAGE_JSON   (a dump-package output, for the self-test)

Exit 0 with `check-imports: ok`, or 1 with one line per undeclared import.
"""
import json
import pathlib
import re
import subprocess
import sys

# Modules of the toolchain and the OS, which no Package.swift declares.
TOOLCHAIN_MODULES = {"Foundation", "FoundationEssentials", "Synchronization", "Dispatch", "Glibc",
                     "Musl", "Darwin", "Testing", "XCTest", "_Concurrency", "Swift"}
IMPORT = re.compile(r"^\s*(?:@[A-Za-z_]+\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?"
                    r"import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)",
                    re.M)


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    if len(sys.argv) > 2:
        package = json.loads(pathlib.Path(sys.argv[2]).read_text())
    else:
        package = json.loads(subprocess.run(["swift", "package", "--package-path", str(root), "dump-package"],
                                            check=True, capture_output=True, text=True).stdout)
    problems = []
    for target in package["targets"]:
        if target["type"] in ("system", "binary", "plugin"):
            continue
        declared = set()
        for dependency in target["dependencies"]:
            value = next(iter(dependency.values()))
            declared.add(value[0])
        folder = root / target["path"] if target.get("path") else \
            root / ("Tests" if target["type"] == "test" else "Sources") / target["name"]
        for source in sorted(folder.rglob("*.swift")):
            text = source.read_text(encoding="utf-8")
            for match in IMPORT.finditer(text):
                module = match.group(1)
                if module in TOOLCHAIN_MODULES or module in declared or module == target["name"]:
                    continue
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{source.relative_to(root)}:{line}: target {target['name']} imports {module}, "
                                f"which Package.swift does not declare as its dependency")
    for problem in problems:
        print(f"check-imports: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("check-imports: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
