# conftest.py: pytest fixtures for the bgsyncd integration suite.
#
#   bg     a started Harness (private bus, mocks, world, bgsyncd); a test
#          changes the agent's config with @pytest.mark.config(Section={...})
#   a, b   app proxies of App A (privileged for both models) and App B
#
# BGSYNCD names the daemon binary (meson sets it); without it every test is
# skipped. The agent must exit 0 on SIGTERM at the end of each test.
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line('markers', 'config(**sections): agent config overrides')
    config.addinivalue_line('markers', 'root: needs root (runs an app as another uid)')


@pytest.fixture(scope='session')
def bindir(tmp_path_factory):
    return harness.make_bindir(str(tmp_path_factory.mktemp('bin')))


def pytest_runtest_setup(item):
    if not os.environ.get('BGSYNCD'):
        pytest.skip('BGSYNCD not set (bgsyncd not built)')
    if not os.access(os.environ['BGSYNCD'], os.X_OK):
        pytest.skip('BGSYNCD=%s is not executable' % os.environ['BGSYNCD'])
    if item.get_closest_marker('root') and os.getuid() != 0:
        pytest.skip('needs root: runs an app proxy as user nobody')


@pytest.fixture
def bg(request, bindir, tmp_path):
    marker = request.node.get_closest_marker('config')
    config = marker.kwargs if marker else {}
    h = harness.Harness(str(tmp_path), bindir, config)
    try:
        h.start()
    except BaseException:
        h.stop()
        print(h.log_tail())
        raise
    yield h
    expected = h.daemon_expected
    status = h.stop()
    print(h.log_tail())
    if expected and status != 0:
        pytest.fail('bgsyncd did not exit cleanly on SIGTERM: status %s' % status)


@pytest.fixture
def a(bg):
    return bg.app('app-a', label='A')


@pytest.fixture
def b(bg):
    return bg.app('app-b', label='B')
