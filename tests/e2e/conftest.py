# conftest.py: the e2e suite's pytest marker
def pytest_configure(config):
    config.addinivalue_line('markers', 'stack(**kw): how to start the e2e stack')
