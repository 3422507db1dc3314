# conftest.py: the e2e suite's pytest markers
def pytest_configure(config):
    config.addinivalue_line('markers', 'stack(**kw): how to start the e2e stack')
    config.addinivalue_line('markers', 'needs(*capabilities): skip with the backend\'s '
                            'reason where it lacks one (tests/scenarios/backends.py)')
