# test_presence_name.py: a model known by its name only. BlueZ puts a
# peripheral app's LocalName in the scan response, and an
# AdvertisementMonitor scans passively (bgsync-sim hides such a name from
# monitors unless the central is discovering, as bluetoothd 5.66 does), so
# bgsyncd must also run an active, filtered discovery for such a model.
import os

import pytest

import e2e

NAME_MODEL = """[Model]
Id=named-wearable
Name=Named wearable
[Match name]
Name=bgsync-wearable
[Presence]
FoundTimeout=1
LostTimeout=5
"""


class NameStack(e2e.Stack):
    def start_daemon(self):
        devices = os.path.join(self.tmp, 'devices')
        try:
            os.remove(os.path.join(devices, 'wearable.conf'))
        except FileNotFoundError:
            pass
        with open(os.path.join(devices, 'named.conf'), 'w') as f:
            f.write(NAME_MODEL)
        super().start_daemon()


@pytest.fixture
def stack(request):
    if not os.environ.get('BGSYNCD'):
        pytest.skip('BGSYNCD, BGSYNC_SIM and BGSYNC_WEARABLE must point at the built programs')
    s = NameStack(name=request.node.name)
    try:
        s.start()
    except BaseException:
        print(s.log('bgsyncd', 80))
        s.stop()
        s.cleanup()
        raise
    yield s
    s.stop()
    print('--- bgsyncd ---\n' + s.log('bgsyncd', 80))
    s.cleanup()


def test_name_only_model_is_found_by_an_active_scan(stack):
    # a registered task for the model makes the agent look for it
    app = stack.run_app('--name', 'sync', '--entry', 'smp-file-sync', '--output-dir', stack.tmp,
                        '--args', '/x', '--consent', 'deny', '--wait-present', '0')
    app.wait_end(60)
    dev = stack.device_present(30)
    assert dev['Model'] == 'named-wearable', dev
    assert 'LE discovery' in stack.log('bgsyncd', 400)
