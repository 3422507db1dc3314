# A hostile device and a misbehaving BlueZ on the GATT fd path: absurd MTUs
# from AcquireWrite/AcquireNotify, a notify or write socket closed in the
# middle of an SMP exchange. The whole stack of the e2e tests (bgsync-sim,
# bgsync-wearable serving SMP, bgsyncd, a companion app); the faults come
# from the simulator's control interface (SetAcquireMTU, CloseAcquired; see
# doc/simulator.md).
#
# For each case: bgsyncd stays up and answers, the task ends in bounded
# time with a clean result and a readable reason (never a hang), and a
# following task on the same device works.
import hashlib
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'e2e'))
import dbus  # noqa: E402
import e2e  # noqa: E402
from harness import call  # noqa: E402  (tests/scenarios' harness, via e2e)

# SMP requests time out after 5 s and are tried 3 times: a dead channel is
# noticed within 15 s plus the link setup; the bound is generous on purpose
END = 90


@pytest.fixture
def stack(request, bindir):
    if not (os.environ.get('BGSYNCD') and os.environ.get('BGSYNC_SIM') and
            os.environ.get('BGSYNC_WEARABLE')):
        pytest.skip('BGSYNCD, BGSYNC_SIM and BGSYNC_WEARABLE must point at the built programs')
    s = e2e.Stack()
    s.bgsyncd = bindir[1]   # the valgrind wrapper with BGS_VALGRIND=1
    marker = request.node.get_closest_marker('stack')
    kw = marker.kwargs if marker else {}
    try:
        s.start(**kw)
    except BaseException:
        print(s.log('bgsyncd', 80))
        s.stop()
        s.cleanup()
        raise
    yield s
    alive = s.daemon.poll() is None
    s.stop()
    print('--- bgsyncd ---\n' + s.log('bgsyncd', 60))
    print('--- wearable ---\n' + s.log('wearable', 20))
    log = s.log('bgsyncd', 100000)
    status = s.daemon.returncode
    s.cleanup()
    assert alive, 'bgsyncd died during the test'
    # SIGTERM: a clean exit (under valgrind, 99 means memcheck errors)
    assert status == 0, 'bgsyncd exited with %s on SIGTERM' % status
    crit = [l for l in log.splitlines() if '-CRITICAL **' in l or 'ERROR **' in l]
    assert not crit, 'bgsyncd logged criticals:\n' + '\n'.join(crit)


def put_file(stack, name, size, seed):
    data = bytes(((i * 31 + seed) & 0xff) for i in range(size))
    path = os.path.join(stack.tmp, 'wearable', 'files', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    return data


def out_dir(stack, name):
    d = os.path.join(stack.tmp, 'out', name)
    os.makedirs(d, exist_ok=True)
    return d


def sync(stack, out, files):
    return stack.run_app('--name', 'sync', '--entry', 'smp-file-sync', '--output-dir', out,
                         '--args', ';'.join(files))


def assert_file(out, name, data):
    with open(os.path.join(out, name), 'rb') as f:
        got = f.read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), (
        '%s: %d bytes, expected %d' % (name, len(got), len(data)))


def agent_answers(stack):
    """The agent is alive and serves: GetDevices lists the wearable."""
    mgr = dbus.Interface(stack.backend.bus.get_object('org.bgsync', '/org/bgsync'),
                         'org.bgsync.Manager1')
    addresses = [str(p['Address']).upper() for p in call(mgr.GetDevices).values()]
    assert stack.address.upper() in addresses, addresses
    assert stack.daemon.poll() is None


def clean_end(end):
    """A task that did not complete: failed with a message, or canceled with
    a reason; either way readable."""
    if end['event'] == 'completed':
        assert not end['success'], end
        assert end['error'] and end['message'].strip(), end
    else:
        assert end['event'] == 'canceled' and end['reason'], end


def then_a_sync_works(stack, seed=9):
    data = put_file(stack, 'after.bin', 3000, seed)
    out = out_dir(stack, 'after')
    app = sync(stack, out, ['/after.bin'])
    end = app.wait_end(END)
    assert end['event'] == 'completed' and end['success'], end
    assert_file(out, 'after.bin', data)


@pytest.mark.parametrize('mtu', [0, 1, 2, 22, 65535])
def test_absurd_acquire_mtu(stack, mtu):
    """AcquireWrite/AcquireNotify report an MTU of 0, 1, 2, 22 (below the
    ATT minimum) or 65535 (more than ATT allows) on a 517-byte link: the
    agent sizes its packets within ATT's bounds and the sync completes."""
    call(stack.sim().SetAcquireMTU, stack.address, dbus.Int32(mtu))
    data = put_file(stack, 'f.bin', 6000, mtu & 0xff)
    out = out_dir(stack, 'mtu')
    end = sync(stack, out, ['/f.bin']).wait_end(END)
    assert end['event'] == 'completed' and end['success'], end
    assert_file(out, 'f.bin', data)
    agent_answers(stack)


def test_reported_mtu_larger_than_the_link_carries(stack):
    """The link's MTU is 23 but Acquire* claims 517: the agent's 510-byte
    packets arrive cut to 20 bytes, so the device never sees a whole
    request. The task fails with a reason, it does not hang."""
    call(stack.sim().Configure, dbus.Dictionary({'mtu': dbus.UInt32(23)}, signature='sv'))
    call(stack.sim().SetAcquireMTU, stack.address, dbus.Int32(517))
    put_file(stack, 'f.bin', 6000, 3)
    end = sync(stack, out_dir(stack, 'cut'), ['/f.bin']).wait_end(END)
    clean_end(end)
    agent_answers(stack)
    # bgsync-wearable's SMP server keeps the cut frames' remains in its
    # reassembly (its write socket outlives the link), so it may stay deaf:
    # whatever it does, the next task on a new link also ends, cleanly
    call(stack.sim().SetAcquireMTU, stack.address, dbus.Int32(-1))
    call(stack.sim().DropLink, stack.address)
    put_file(stack, 'after.bin', 3000, 4)
    end = sync(stack, out_dir(stack, 'after'), ['/after.bin']).wait_end(END)
    if not (end['event'] == 'completed' and end['success']):
        clean_end(end)
    agent_answers(stack)


@pytest.mark.parametrize('which', ['notify', 'write', 'all'])
def test_socket_closed_mid_sync(stack, which):
    """The device (or bluetoothd) closes the acquired notify and/or write
    socket in the middle of a download: a device-use task is never
    silently reconnected, so it fails with the link error."""
    put_file(stack, 'big.bin', 400000, 7)
    call(stack.sim().SetLinkRate, stack.address, dbus.UInt64(40000))
    app = sync(stack, out_dir(stack, 'mid'), ['/big.bin'])
    app.wait(lambda e: e['event'] == 'progress' and e['percent'] > 0, 60, 'download progress')
    closed = call(stack.sim().CloseAcquired, stack.address, which)
    assert closed >= 1, closed
    end = app.wait_end(END)
    clean_end(end)
    if end['event'] == 'completed':
        assert 'link' in end['message'] or 'closed' in end['message'], end
    agent_answers(stack)
    call(stack.sim().SetLinkRate, stack.address, dbus.UInt64(0))
    then_a_sync_works(stack)


def image_file(stack, size=64 * 1024, seed=1):
    import mcuboot
    data, _ = mcuboot.build(size, seed=seed)
    path = os.path.join(stack.tmp, 'fw-%d.bin' % seed)
    with open(path, 'wb') as f:
        f.write(data)
    return path


@pytest.mark.parametrize('which', ['notify', 'write'])
def test_socket_closed_mid_update(stack, which):
    """Servicing: a socket closed mid-upload ends in bounded time either
    resumed to completion or with a clean error, never a hang."""
    call(stack.sim().SetLinkRate, stack.address, dbus.UInt64(40000))
    app = stack.run_app('--name', 'update', '--trigger', 'device-servicing',
                        '--entry', 'smp-firmware-update', '--estimate', '120',
                        '--input', image_file(stack, 200 * 1024))
    app.wait(lambda e: e['event'] == 'progress' and e['percent'] > 2, 60, 'upload progress')
    assert call(stack.sim().CloseAcquired, stack.address, which) >= 1
    end = app.wait_end(150)
    if not (end['event'] == 'completed' and end['success']):
        clean_end(end)
    agent_answers(stack)
