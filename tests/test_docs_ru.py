"""The Russian guide (docs/ru) is followed word by word, the way a newcomer would.

A shop owner copies the guide's commands one by one, so every fenced ```sh
block of every docs/ru/*.md runs here, in order, in one fresh folder per
document, against the CRM emulators. A command that stopped working fails this
test, and so does a command the guide tells people to copy from an earlier
output that no longer prints it.

Conventions the guide's Markdown follows (docs/ru/README.md's source says so too):

- Commands are in ```sh blocks; ```text blocks show output or file contents and
  are not run; ```bash, ```shell and ```console are not used.
- Each command runs on its own with bash, with the environment and folder the
  previous one left (so `cd`, `export` and `source .venv/bin/activate` carry
  over, as in a terminal). A line ending with `\\` goes on on the next line.
  A command must exit with status 0. Shell variables carry over too (`ID=$(…)`
  on one line, `$ID` on a later one), as they would in the reader's terminal.
- `# → TEXT` under a command: TEXT must appear in what it printed.
  `# ✗ TEXT`: the command must fail (non-zero status) and print TEXT.
  `# ⌨ TEXT`: TEXT is typed at the command's prompt (one line each).
- A command ending with `&` keeps serving (`hub sandbox …`, `hub admin`,
  `hub scheduler`, `hub worker`): it is started in its own process group, its
  `--port` is waited for, and it is stopped at the end of the document, also
  when a step fails. `… & NAME=$!` does the same and sets NAME to its process id,
  so a later `kill $NAME` stops it. The ports 8024, 8025 and 5000 are replaced with free ones
  everywhere, so the guide can name the usual ones.
- `<…>` with Russian words inside a command stands for what the reader copies
  from an earlier output: the command runs as the last line printed earlier
  that contains the command's words before the `<`, from those words on.
- An HTML comment right before a fenced block:
  `<!-- test: not run — REASON -->` skips it (only for what cannot run here,
  such as a real portal's address; few are allowed);
  `<!-- test: file NAME -->` writes the block to NAME in the current folder;
  `<!-- test: hub.toml -->` adds the block to ./hub.toml the way the guide says
  to: keys without a [table] go to the top of the file, tables to its end.
- HOME is the document's temporary folder, the project's .venv is linked there
  (as in a checkout) and its bin is on PATH; no HUB_* variable of the person
  running the tests leaks in, so HUB_LANGUAGE is the default (Russian).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parseaddr
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "ru"
VENV_BIN = Path(sys.executable).parent
USUAL_PORTS = ("8024", "8025", "5000")
MAX_NOT_RUN = 8  # blocks in the whole guide that may be skipped, each with its reason
COMMAND_TIMEOUT_S = 180  # a guard against a hung command, not a measure of speed
START_TIMEOUT_S = 60

_MARKER = re.compile(r"<!--\s*test:\s*(?P<what>not run|file|hub\.toml)\s*(?P<rest>.*?)\s*-->")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w.+-]*)")
_PLACEHOLDER = re.compile(r"<[^<>\n]*[А-Яа-яЁё][^<>\n]*>")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_BACKGROUND = re.compile(r"^(?P<command>.*[^&])&\s*(?:(?P<pid_variable>[A-Za-z_]\w*)=\$!)?$")


@dataclass
class Command:
    text: str
    line: int
    expects: list[str] = field(default_factory=list)
    fails_with: list[str] = field(default_factory=list)
    stdin: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        """The command without a trailing `# explanation`."""
        return re.sub(r"\s+#\s.*$", "", self.text).rstrip()

    @property
    def background(self) -> bool:
        return _BACKGROUND.match(self.code) is not None


@dataclass
class Block:
    lang: str
    body: str
    line: int
    marker: str | None = None  # "not run", "file", "hub.toml"
    argument: str = ""

    def commands(self) -> list[Command]:
        """The block's commands with the expectations written under each."""
        commands: list[Command] = []
        pending = ""
        start = self.line
        for offset, raw in enumerate(self.body.splitlines(), start=self.line + 1):
            stripped = raw.strip()
            if not pending and stripped.startswith("#"):
                for sign, attribute in (("# →", "expects"), ("# ✗", "fails_with"), ("# ⌨", "stdin")):
                    if stripped.startswith(sign):
                        if not commands:
                            raise AssertionError(f"line {offset}: {sign} before any command")
                        getattr(commands[-1], attribute).append(stripped[len(sign):].strip())
                continue
            if not stripped and not pending:
                continue
            if not pending:
                start = offset
            if stripped.endswith("\\"):
                pending += stripped[:-1].rstrip() + " "
                continue
            commands.append(Command(pending + stripped, start))
            pending = ""
        if pending:
            raise AssertionError(f"line {start}: a command ends with a backslash")
        return commands


def parse(text: str) -> list[Block]:
    """Fenced blocks in document order, each with the test marker written just before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    marker: tuple[str, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        found = _MARKER.search(line)
        if found:
            marker = (found["what"], found["rest"].lstrip("—-– ").strip())
            index += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            body: list[str] = []
            index += 1
            while index < len(lines) and not lines[index].strip().startswith("```"):
                body.append(lines[index][len(fence["indent"]):] if lines[index].startswith(fence["indent"])
                            else lines[index])
                index += 1
            blocks.append(Block(fence["lang"], "\n".join(body) + "\n", index - len(body),
                                marker[0] if marker else None, marker[1] if marker else ""))
            marker = None
        elif line.strip():
            marker = None
        index += 1
    return blocks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def merge_into_hub_toml(path: Path, block: str) -> None:
    """Add settings as the guide tells people to: plain keys at the top, [tables] at the end."""
    head: list[str] = []
    tail: list[str] = []
    for line in block.splitlines():
        (tail if tail or line.strip().startswith("[") else head).append(line)
    existing = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    first_table = next((i for i, line in enumerate(existing) if line.strip().startswith("[")), len(existing))
    merged = existing[:first_table] + [line for line in head if line.strip()] + existing[first_table:]
    if tail:
        merged += [""] + tail
    path.write_text("\n".join(merged) + "\n", encoding="utf-8")


class Reader:
    """Runs one document's blocks as a newcomer would, in a terminal of their own."""

    def __init__(self, doc: Path, home: Path) -> None:
        self.doc = doc
        self.home = home
        self.ports = {usual: str(_free_port()) for usual in USUAL_PORTS}
        self.cwd = home
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("HUB_") and k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
        self.env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.outputs: list[str] = []
        self.background: list[tuple[subprocess.Popen[bytes], Path, str]] = []
        (home / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)

    # ------------------------------------------------------------------ text

    def localize(self, text: str) -> str:
        for usual, free in self.ports.items():
            text = re.sub(rf"(?<!\d){usual}(?!\d)", free, text)
        return text

    def where(self, command: Command) -> str:
        return f"{self.doc.name}:{command.line}: {command.text}"

    def everything_printed(self) -> list[str]:
        logs = [log.read_text(encoding="utf-8", errors="replace") for _, log, _ in self.background]
        return self.outputs + logs

    def fill_placeholders(self, command: Command) -> str:
        """A command with `<…>` is the line the reader copies from what was printed before."""
        found = _PLACEHOLDER.search(command.text)
        if not found:
            return command.text
        prefix = self.localize(command.text[:found.start()].strip())
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for printed in reversed(self.everything_printed()):
                for line in reversed(printed.splitlines()):
                    at = line.find(prefix)
                    if at >= 0:
                        return line[at:].strip()
            if not self.background or time.monotonic() > deadline:
                raise AssertionError(f"{self.where(command)}\nthe guide tells the reader to copy a line with "
                                     f"{prefix!r} from what was printed before, but nothing printed one")
            time.sleep(0.2)

    # ------------------------------------------------------------------ running

    def run_block(self, block: Block) -> None:
        if block.marker == "file":
            (self.cwd / block.argument).write_text(self.localize(block.body), encoding="utf-8")
            return
        if block.marker == "hub.toml":
            merge_into_hub_toml(self.cwd / "hub.toml", self.localize(block.body))
            return
        for command in block.commands():
            if _PLACEHOLDER.search(command.text):
                text = self.fill_placeholders(command)
            else:
                text = self.localize(command.code)
            started = _BACKGROUND.match(text) if command.background else None
            if started:
                self.start(command, started["command"].rstrip(), started["pid_variable"])
            else:
                self.run(command, text)

    def run(self, command: Command, text: str) -> None:
        state = self.home / ".state"
        # set -a: a plain `NAME=value` lands in the saved environment, so it lives on as in a terminal.
        script = (f"set -a\n{text}\n__hub_status=$?\n"
                  f"{{ env -0 > {shlex.quote(str(state))}.env; pwd > {shlex.quote(str(state))}.pwd; }} 2>/dev/null\n"
                  f"exit $__hub_status\n")
        typed = "".join(line + "\n" for line in command.stdin)
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, input=typed.encode(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S,
                              start_new_session=True)
        printed = done.stdout.decode("utf-8", errors="replace")
        self.outputs.append(printed)
        report = f"{self.where(command)}\nran: {text}\nexit status {done.returncode}; it printed:\n{printed}"
        if command.fails_with:
            assert done.returncode != 0, f"expected to fail\n{report}"
        else:
            assert done.returncode == 0, report
        for text_seen in command.expects + command.fails_with:
            assert self.localize(text_seen) in printed, f"{text_seen!r} is not in the output\n{report}"
        env_file, pwd_file = Path(f"{state}.env"), Path(f"{state}.pwd")
        if env_file.exists():
            pairs = (item.split("=", 1) for item in env_file.read_text(errors="replace").split("\0") if "=" in item)
            self.env = {key: value for key, value in pairs if not key.startswith("BASH_FUNC_")}
            for name in ("_", "SHLVL", "OLDPWD", "PWD", "__hub_status"):
                self.env.pop(name, None)
            self.cwd = Path(pwd_file.read_text().strip() or self.cwd)
            env_file.unlink()
            pwd_file.unlink(missing_ok=True)

    def start(self, command: Command, text: str, pid_variable: str | None = None) -> None:
        log = self.home / f".background-{len(self.background) + 1}.log"
        handle = log.open("wb")
        process = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        self.background.append((process, log, text))
        if pid_variable:
            self.env[pid_variable] = str(process.pid)  # `exec` makes it the command's own process id
        port = re.search(r"--port[ =](\d+)", text)
        if not port:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(int(port[1])):
            if process.poll() is not None or time.monotonic() > deadline:
                printed = log.read_text(encoding="utf-8", errors="replace")
                raise AssertionError(f"{self.where(command)}\nnever listened on port {port[1]}; "
                                     f"exit status {process.poll()}; it printed:\n{printed}")
            time.sleep(0.1)

    def stop_everything(self) -> None:
        """Stop what the guide left serving: the whole process group, politely, then for good."""
        for process, _, _ in self.background:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process, _, _ in self.background:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=15)


def _docs() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


def test_the_guide_has_the_chapters_a_newcomer_needs() -> None:
    names = {path.name for path in _docs()}
    assert {"README.md", "quickstart.md", "bitrix24.md", "amocrm.md", "reactivation.md", "consent.md",
            "roles.md"} <= names


@pytest.mark.parametrize("doc", _docs(), ids=lambda path: path.name)
def test_every_command_of_the_guide_works(doc: Path, tmp_path: Path) -> None:
    follow(Reader(doc, tmp_path))
    if doc.name == "reactivation.md":
        letters_come_from_the_shop(tmp_path / "lavka")


def letters_come_from_the_shop(folder: Path) -> None:
    """After the guide sets the shop's details, its letters carry the shop's name and address as From."""
    settings = tomllib.loads((folder / "hub.toml").read_text(encoding="utf-8"))
    shop = settings["company"]["name"]
    _, address = parseaddr(settings["mail_from"])
    letters = sorted((folder / "outbox").glob("*-email.eml"))
    assert letters, "the guide's campaign wrote no letter to outbox/"
    for letter in letters:
        sender = message_from_bytes(letter.read_bytes(), policy=default_policy)["From"]
        assert parseaddr(str(sender)) == (shop, address), f"{letter.name}: From {sender}"


def follow(reader: Reader) -> None:
    """Do what the document says, block by block; whatever it left serving is stopped in any case."""
    doc = reader.doc
    blocks = parse(doc.read_text(encoding="utf-8"))
    try:
        for block in blocks:
            if block.lang in {"bash", "shell", "console"}:
                raise AssertionError(f"{doc.name}:{block.line}: write commands as ```sh (run by this test) "
                                     f"and output as ```text, not ```{block.lang}")
            if block.marker == "not run":
                assert block.argument, f"{doc.name}:{block.line}: say why the block cannot run here"
                continue
            if block.lang == "sh" or block.marker in {"file", "hub.toml"}:
                reader.run_block(block)
    finally:
        reader.stop_everything()


def test_few_blocks_are_left_unrun() -> None:
    skipped = [(doc.name, block.line, block.argument) for doc in _docs()
               for block in parse(doc.read_text(encoding="utf-8")) if block.marker == "not run"]
    assert len(skipped) <= MAX_NOT_RUN, skipped


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {_slug(match[1]) for match in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M)}


def test_every_relative_link_of_the_guide_resolves() -> None:
    broken = []
    for doc in _docs():
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for match in _LINK.finditer(text):
            target = match["target"]
            if re.match(r"[a-z]+:", target):
                continue
            path_part, _, anchor = target.partition("#")
            path = (doc.parent / path_part).resolve() if path_part else doc
            if not path.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_project_readme_points_to_the_guide_at_the_top() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    top = readme.split("\n## ", 1)[0]
    assert re.search(r"\]\(docs/ru/(README\.md)?\)", top), "README.md links docs/ru before its first section"


def test_the_conventions_are_read_as_documented(tmp_path: Path) -> None:
    text = ("<!-- test: not run — a real portal -->\n```sh\nhub connect x\n```\n\n"
            "```sh\nhub one --a \\\n    --b   # trailing comment\n# → seen\n# ⌨ typed\n"
            "hub sandbox bitrix24 --port 8024 &\nhub sandbox amocrm --port 8025 & AMO=$!\necho a && b\n```\n"
            "<!-- test: hub.toml -->\n```toml\nfrequency_cap = \"2/7d\"\n\n[quiet_hours]\nsms = \"21:00-09:00\"\n```\n")
    blocks = parse(text)
    assert [(block.marker, block.argument) for block in blocks] == [
        ("not run", "a real portal"), (None, ""), ("hub.toml", "")]
    first, second, third, fourth = blocks[1].commands()
    assert first.text == "hub one --a --b   # trailing comment"
    assert (first.expects, first.stdin, first.background) == (["seen"], ["typed"], False)
    assert second.background and third.background and not fourth.background
    settings = tmp_path / "hub.toml"
    settings.write_text('secret_key = "k"\n\n[company]\nname = "Лавка"\n', encoding="utf-8")
    merge_into_hub_toml(settings, blocks[2].body)
    parsed = tomllib.loads(settings.read_text(encoding="utf-8"))
    assert parsed["frequency_cap"] == "2/7d" and parsed["quiet_hours"] == {"sms": "21:00-09:00"}
    assert parsed["company"] == {"name": "Лавка"}
    assert _PLACEHOLDER.search("hub connect bitrix24 --webhook <адрес из вывода>")
    assert not _PLACEHOLDER.search("hub gdpr export 2 --json > anna.json")


def test_a_broken_step_fails_and_what_serves_is_stopped_anyway(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text("```sh\nsleep 300 &\nsleep 301 & NAP=$!\nmkdir sub\ncd sub\nexport SHOP=lavka\nNUMBER=$(echo 7)\n"
                   "echo \"$SHOP in $(basename \"$PWD\"), $NUMBER\"\n# → lavka in sub, 7\n"
                   "kill -INT $NAP\n"
                   "echo 'next: hub connect nothing --key s3cret'\n"
                   "hub connect nothing <ключ из вывода выше>\n```\n", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    reader = Reader(doc, home)
    with pytest.raises(AssertionError) as failed:
        follow(reader)
    assert "ran: hub connect nothing --key s3cret" in str(failed.value)
    assert "exit status 2" in str(failed.value)
    assert len(reader.background) == 2 and all(process.poll() is not None for process, _, _ in reader.background)
    assert reader.background[1][0].returncode == -signal.SIGINT  # `kill -INT $NAP` reached the right one
