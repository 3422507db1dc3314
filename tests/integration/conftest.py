# conftest.py: pytest fixtures for the bgsyncd integration suite.
#
#   bg     a started Harness (private bus, mocks, world, bgsyncd); a test
#          changes the agent's config with @pytest.mark.config(Section={...})
#   a, b   app proxies of App A (privileged for both models) and App B
#
# Each test gets a fresh /tmp/bgsync-it-XXXX (removed afterwards unless
# BGS_KEEP_TMP=1) holding the bus socket, config, manifests, state and logs.
#
# BGSYNCD names the daemon binary (meson sets it); without it every test is
# skipped. The agent must exit 0 on SIGTERM at the end of each test and log
# no CRITICAL (BGS_ALLOW_CRITICALS=1 turns that check off while debugging).
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line('markers', 'config(**sections): agent config overrides')
    config.addinivalue_line('markers', 'root: needs root (runs an app as another uid)')


# not pytest's tmp_path: its parent is 0700 and one test runs an app as
# nobody, which must reach the interpreter copies and the bus socket
def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get('BGS_TMPDIR', '/tmp'))
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope='session')
def bindir():
    d = _tmpdir('bgsync-it-bin-')
    yield harness.make_bindir(d)
    shutil.rmtree(d, ignore_errors=True)


def pytest_runtest_setup(item):
    if not os.environ.get('BGSYNCD'):
        pytest.skip('BGSYNCD not set (bgsyncd not built)')
    if not os.access(os.environ['BGSYNCD'], os.X_OK):
        pytest.skip('BGSYNCD=%s is not executable' % os.environ['BGSYNCD'])
    if item.get_closest_marker('root') and os.getuid() != 0:
        pytest.skip('needs root: runs an app proxy as user nobody')


@pytest.fixture
def bg(request, bindir):
    yield from harness.running_harness(request, _tmpdir('bgsync-it-'), bindir)


@pytest.fixture
def a(bg):
    return bg.app('app-a', label='A')


@pytest.fixture
def b(bg):
    return bg.app('app-b', label='B')
