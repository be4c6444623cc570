"""Every command, config, flag, link and path the README, BUILD.md and docs/
name must exist, so that a rename breaks the suite and not the reader.

Checked without running anything: a launcher's or benchmark's flags are
read from its source (``flags.DEFINE_*('name'``, with experiments/launch.py's
for the launchers), a config file is loaded with the arguments named
(``get_config('real,full_pool')``), and each ``--config.a.b=...`` must be a
field of that config (or, outside a command, of the main or the comparison
config).
"""

import dataclasses
import functools
import importlib.util
import pathlib
import re
import shlex

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', ROOT / 'BUILD.md', *sorted((ROOT / 'docs').glob('*.md'))]

COMMAND = re.compile(r'(?:\.venv/bin/)?python3?\s+(?:-m\s+(experiments\.\w+)|(benchmarks/\w+\.py))')
CONFIG_ARG = re.compile(r'\bconfigs/(\w+)\.py(?::([\w,]+))?')
OVERRIDE = re.compile(r'--config\.([\w.]+)=')
LINK = re.compile(r'\]\(([^)\s]+)\)')
# A file (with an extension) or a folder (with its slash) of the checkout.
PATH = re.compile(r'(?<![\w./-])((?:priojax|configs|benchmarks|experiments|tests|docs|\.ci)/[\w./-]*(?:\.[a-z]+\b|/))')
DEFINE = re.compile(r"DEFINE_\w+\(\s*'(\w+)'")


@dataclasses.dataclass(frozen=True)
class Mention:
  page: pathlib.Path
  line: int
  text: str

  def where(self) -> str:
    return f'{self.page.relative_to(ROOT)}:{self.line}'


def logical_lines(page: pathlib.Path) -> list[Mention]:
  """The page's lines, a shell line continued with '\\' joined to the next."""
  out, pending, start = [], '', 0
  for number, line in enumerate(page.read_text().splitlines(), 1):
    if not pending:
      start = number
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
      continue
    out.append(Mention(page, start, pending + line))
    pending = ''
  return out


def all_lines() -> list[Mention]:
  return [m for page in PAGES for m in logical_lines(page)]


def command_tokens(text: str) -> list[str]:
  """The words of a command up to the end of its shell command or code span."""
  rest = re.split(r'`|&&|\|\||;|\s#\s|\s\|\s|\)$', text)[0]
  try:
    words = shlex.split(rest)
  except ValueError:  # an unbalanced quote in prose: the plain words
    words = rest.split()
  return [w.strip('\'"') for w in words if w != '...']


@functools.cache
def flags_of(target: str) -> frozenset[str]:
  if target.startswith('experiments.'):  # a launcher, and the flags every launcher shares
    files = [ROOT / f'{target.replace(".", "/")}.py', ROOT / 'experiments' / 'launch.py']
  else:  # a benchmark, and --results_section
    files = [ROOT / target, ROOT / 'benchmarks' / 'results_block.py']
  return frozenset(name for f in files for name in DEFINE.findall(f.read_text()))


@functools.cache
def load_config(name: str, arg: str | None):
  spec = importlib.util.spec_from_file_location(f'docs_config_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def has_field(config, dotted: str) -> bool:
  node = config
  for part in dotted.split('.'):
    if not hasattr(node, 'keys') or part not in node.keys():
      return False
    node = node[part]
  return True


def check_command(m: Mention, match: re.Match) -> list[str]:
  module, script = match.group(1), match.group(2)
  target = module or script
  path = ROOT / (f'{module.replace(".", "/")}.py' if module else script)
  if not path.is_file():
    return [f'{m.where()}: {target}: no such launcher or script ({path.relative_to(ROOT)})']
  problems, config = [], None
  defined = flags_of(target)
  for word in command_tokens(m.text[match.end():]):
    if not word.startswith('--'):
      continue
    name, _, value = word[2:].partition('=')
    if name.startswith('config.'):
      continue  # checked against the config below
    if name not in defined and not (name.startswith('no') and name[2:] in defined):
      problems.append(f'{m.where()}: {target} has no flag --{name}')
    if name == 'config' and '<' not in value:
      config_match = CONFIG_ARG.fullmatch(value)
      if config_match is None:
        problems.append(f'{m.where()}: --config={value}: expected configs/<name>.py[:args]')
        continue
      try:
        config = load_config(config_match.group(1), config_match.group(2))
      except (OSError, ValueError) as e:
        problems.append(f'{m.where()}: --config={value} does not load: {e}')
  for word in command_tokens(m.text[match.end():]):
    override = OVERRIDE.match(word)
    if override and config is not None and not has_field(config, override.group(1)):
      problems.append(f'{m.where()}: {word.split("=")[0]}: no such field in that config')
  return problems


def test_the_docs_name_only_commands_flags_and_configs_that_exist():
  problems, commands = [], 0
  for m in all_lines():
    for match in COMMAND.finditer(m.text):
      commands += 1
      problems += check_command(m, match)
  assert commands >= 20  # the scan finds the docs' commands at all
  assert problems == []


def test_the_docs_config_arguments_and_overrides_load():
  problems, seen = [], 0
  fallback = [load_config('iou_priority', None), load_config('compare', None)]
  for m in all_lines():
    for match in CONFIG_ARG.finditer(m.text):
      seen += 1
      try:
        load_config(match.group(1), match.group(2))
      except (OSError, ValueError) as e:
        problems.append(f'{m.where()}: {match.group(0)} does not load: {e}')
    # An override named in prose is a field of a known config (except in the
    # documented error line for an unknown one).
    if not COMMAND.search(m.text) and 'config has no field' not in m.text:
      for override in OVERRIDE.finditer(m.text):
        if not any(has_field(c, override.group(1)) for c in fallback):
          problems.append(f'{m.where()}: --config.{override.group(1)}: no such config field')
  assert seen >= 20
  assert problems == []


def test_the_docs_links_and_paths_exist():
  problems = []
  for m in all_lines():
    for link in LINK.findall(m.text):
      if re.match(r'[a-z]+:', link) or link.startswith('#'):
        continue
      if not (m.page.parent / link.split('#')[0]).exists():
        problems.append(f'{m.where()}: link {link}: no such file')
    for path in PATH.findall(m.text):
      if '<' in path or '*' in path or not (ROOT / path).exists():
        if '<' not in path and '*' not in path:
          problems.append(f'{m.where()}: {path}: no such file or folder')
  assert problems == []


@pytest.mark.parametrize('text, problem', [
    ('python -m experiments.run --config=configs/iou_priority.py:smoke --nope=1', 'has no flag --nope'),
    ('python -m experiments.compare --config=configs/compare.py:lowest', 'does not load'),
    ('python -m experiments.run --config=configs/iou_priority.py --config.rounds.kk=3', 'no such field'),
    ('python benchmarks/none.py --quick', 'no such launcher or script'),
])
def test_a_stale_command_is_caught(text, problem):
  m = Mention(ROOT / 'README.md', 1, text)
  (found,) = [p for match in COMMAND.finditer(text) for p in check_command(m, match)]
  assert problem in found
