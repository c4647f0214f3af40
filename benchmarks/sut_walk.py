"""How many stops a `--sut` spec passes between the `run` command and its adapter's constructor.

    .venv/bin/python benchmarks/sut_walk.py [--root CHECKOUT] [--spec SPEC ...] [--show]

Issue 26 counts the route a newcomer reads to find where a spec becomes a SUT. A stop is entering
a different file of ours from the one the route was in, by a call or by a return, from the `run`
command's function to the entry of the first SUT constructor (`__init__` of a `SUT`): the path of
frames that leads there, and everything `make_sut` does below it (its helper calls in other files
and their returns). Side calls that the command and the runner make on the way (the console, the
registry listing) are not on the route; calls into other packages (pydantic, yaml), module bodies
run by an import, and code generated at run time (dataclass `__init__`s) are not stops. So
`registry > specs > registry` is three stops: a helper in another file, and back.

On commit ee10a72 this reproduces the issue's "10 stops in 7 files" for the default SUT, route
for route (run > runner > registry > specs > registry > embedded > registry > hf_loading >
registry > huggingface). For `hf:PATH+wanda=0.5` the issue counts 33 in 9 files; this definition
gives 12 in 6 on that commit, and `--through-init` (the route until the constructor returns, so
that what the constructor calls counts too) gives 23 in 8: neither reproduces 33. Since the front
door became one table (suts/registry.py): 4 stops for each of the three specs (run > runner >
registry > adapter), and 8, 8 and 16 with `--through-init` (where the adapter now locates its
weights and reads its key). `--root` measures another checkout (a `git worktree` of an older
commit): its folders are mapped onto `modelbench.*` as pyproject's package-dir maps them, in a
fresh interpreter. Nothing is generated: the trace stops at the constructor.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOLDERS = ("hazards", "prompts", "suts", "graders", "reports")
DEFAULT_SPECS = ("smollm2-135m", "openai-compat:m@http://127.0.0.1:9/v1", "hf:{tiny}+wanda=0.5")

CHILD = r'''
import json, os, sys
from pathlib import Path
root = Path(sys.argv[1]).resolve()
ours = str(root / "modelbench")
import click.testing
from modelbench.cli import main
from modelbench.suts.base import SUT

class Reached(Exception):
    pass

events = []  # (file, function or "<return>", frame id, caller id), in order, for our files
alive = []   # every traced frame, kept so that no id is reused by a later frame
state = {"run": None, "path": None}
THROUGH = os.environ.get("WALK_THROUGH_INIT") == "1"  # count what the constructor calls, too

def ours_file(frame):
    return frame.f_code.co_filename.startswith(ours)

def importing(frame):
    """Whether the call runs a module's body (an import) below the `run` command."""
    while frame is not None and id(frame) != state["run"]:
        if frame.f_code.co_name == "<module>":
            return True
        frame = frame.f_back
    return False

def profile(frame, event, arg):
    if state["run"] is None:
        if event == "call" and frame.f_code.co_name == "run" and frame.f_code.co_filename.endswith(
            os.path.join("cli", "run.py")
        ):
            state["run"] = id(frame)
            alive.append(frame)
            events.append((frame.f_code.co_filename, "run", id(frame), 0))
        return
    if not ours_file(frame) or importing(frame) or frame.f_back is None or not ours_file(frame.f_back):
        return
    if event == "return":
        events.append((frame.f_back.f_code.co_filename, "<return>", id(frame.f_back), id(frame)))
    elif event == "call":
        alive.append(frame)
        events.append((frame.f_code.co_filename, frame.f_code.co_name, id(frame), id(frame.f_back)))
        if state["path"] is None and frame.f_code.co_name == "__init__" and isinstance(
            frame.f_locals.get("self"), SUT
        ):
            path, walker = [], frame
            while walker is not None:
                path.append(id(walker))
                walker = walker.f_back
            state["path"] = path
            if not THROUGH:
                raise Reached()
            state["init"] = id(frame)
    if event == "return" and THROUGH and id(frame) == state.get("init"):
        raise Reached()

sys.setprofile(profile)
try:
    result = click.testing.CliRunner().invoke(
        main, ["run", "--sut", sys.argv[2], "--graders", "refusal", "--no-preflight", "--max-items", "1",
               "--run-dir", sys.argv[3]], catch_exceptions=True)
finally:
    sys.setprofile(None)
rel = [(os.path.relpath(f, root), n, i, c) for f, n, i, c in events]
print(json.dumps({"reached": state["path"] is not None, "events": rel, "path": state["path"] or [],
                  "output": result.output[-400:]}))
'''


def shim(root: Path, into: Path) -> Path:
    """A folder where `modelbench` is the checkout's package with its other folders inside it."""
    package = into / "modelbench"
    shutil.copytree(root / "modelbench", package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in FOLDERS:
        (package / folder).symlink_to(root / folder, target_is_directory=True)
    return into


def walk(root: Path, spec: str, through_init: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = shim(root, Path(tmp) / "shim")
        env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1"}
        env["WALK_THROUGH_INIT"] = "1" if through_init else "0"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), spec, str(Path(tmp) / "runs")],
            capture_output=True, text=True, env=env, timeout=300, cwd=tmp,
        )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the trace failed for {spec}: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import build_tiny_llama  # the tests' tiny random-weight model

    return build_tiny_llama(folder)


def route(found: dict) -> list[str]:
    """The files of the route (see the module's docstring), one per stop."""
    events, path = found["events"], set(found["path"])
    calls = {fid: (name, caller) for _, name, fid, caller in events if name != "<return>"}
    builders = [fid for fid in found["path"] if calls.get(fid, ("",))[0] == "make_sut"]
    top = builders[-1] if builders else None  # the outermost make_sut on the path

    def below_builder(fid: int) -> bool:
        while fid in calls:
            if fid == top:
                return True
            fid = calls[fid][1]
        return False

    stops: list[str] = []
    for file, _, fid, _ in events:
        if "<string>" in file or not (fid in path or below_builder(fid)):
            continue
        if not stops or stops[-1] != file:
            stops.append(file)
    return stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parent)
    parser.add_argument("--spec", action="append", default=None)
    parser.add_argument("--show", action="store_true", help="print each route")
    parser.add_argument(
        "--through-init", action="store_true", help="follow the route until the constructor returns"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = tiny_model(Path(tmp) / "tiny")
        specs = [s.replace("{tiny}", str(tiny)) for s in (args.spec or DEFAULT_SPECS)]
        for spec in specs:
            found = walk(args.root.resolve(), spec, args.through_init)
            label = spec.replace(str(tiny), "PATH")
            if not found["reached"]:
                print(f"{label}: no SUT constructor was reached: {found['output']}")
                continue
            stops = route(found)
            print(f"{label}: {len(stops)} stops in {len(set(stops))} files")
            if args.show:
                print("    " + " > ".join(Path(f).stem for f in stops))


if __name__ == "__main__":
    main()
