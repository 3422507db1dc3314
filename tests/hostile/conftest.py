# conftest.py: fixtures of the hostile suite (tests/hostile/README.md).
#
#   bg     tests/integration's Harness: private bus, dbusmock's logind,
#          upower and bluez5 templates, bgsyncd; here org.bluez turns hostile
#   a      App A's proxy (privileged for both models)
#
# BGS_VALGRIND=1 runs bgsyncd under valgrind (memcheck): an invalid read or
# a definite leak makes it exit non-zero, which fails the test like a crash.
import importlib.util
import os
import shutil
import stat
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name, path):
    # tests/integration's harness.py and tests/scenarios' harness.py share a
    # module name; the first is loaded as it_harness so both can be used
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


harness = _load('it_harness', os.path.join(HERE, '..', 'integration', 'harness.py'))

VALGRIND = """#!/bin/sh
echo "bgsyncd under valgrind" >&2
exec valgrind --quiet --error-exitcode=99 --leak-check=full \\
  --errors-for-leak-kinds=definite --show-leak-kinds=definite \\
  %(supp)s --num-callers=30 %(bgsyncd)s "$@"
"""
GLIB_SUPP = '/usr/share/glib-2.0/valgrind/glib.supp'


def pytest_configure(config):
    config.addinivalue_line('markers', 'config(**sections): agent config overrides')
    config.addinivalue_line('markers', 'stack(**kw): e2e.Stack.start() arguments')


def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get('BGS_TMPDIR', '/tmp'))
    os.chmod(d, 0o755)
    return d


def pytest_runtest_setup(item):
    if not os.environ.get('BGSYNCD'):
        pytest.skip('BGSYNCD not set (bgsyncd not built)')


@pytest.fixture(scope='session')
def bindir():
    d = _tmpdir('bgsync-hostile-bin-')
    harness.make_bindir(d)
    bgsyncd = os.environ['BGSYNCD']
    if os.environ.get('BGS_VALGRIND') == '1':
        if shutil.which('valgrind') is None:
            pytest.skip('BGS_VALGRIND=1 but valgrind is not installed')
        wrapper = os.path.join(d, 'bgsyncd-valgrind')
        with open(wrapper, 'w') as f:
            supp = [os.path.join(HERE, 'glib.supp')]
            if os.path.exists(GLIB_SUPP):
                supp.append(GLIB_SUPP)
            f.write(VALGRIND % {'supp': ' '.join('--suppressions=' + x for x in supp),
                                'bgsyncd': bgsyncd})
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        bgsyncd = wrapper
    yield d, bgsyncd
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bg(request, bindir):
    yield from harness.running_harness(request, _tmpdir('bgsync-hostile-'), bindir[0], bindir[1])


@pytest.fixture
def a(bg):
    return bg.app('app-a', label='A')
