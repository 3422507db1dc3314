# Resources: a long-lived agent must not accumulate file descriptors or
# client state across many runs, cancels and app exits.
import os

from harness import WATCH1, start_run


def fd_count(bg):
    return len(os.listdir('/proc/%d/fd' % bg.daemon.pid))


def test_no_fd_leak_over_many_runs(bg, a):
    a.become_agent('allow')
    t = a.register('sync')
    ts = a.register('update', 'device-servicing')

    def cycle(i):
        kind = i % 4
        task = ts if kind == 3 else t
        t2, ch = start_run(bg, a, task=task, estimate=60 if kind == 3 else 0)
        if kind == 0:
            ch.send('complete')
            a.wait_signal('Completed', task, lambda args: True)
        elif kind == 1:
            a.task(task, 'Cancel')
        elif kind == 2:
            ch.send('fail oops')
        else:
            ch.close()
        ch.close()
        a.wait_state(task, 'idle')
        a.take_events(task)

    for i in range(4):          # warm up caches, lazily created proxies, ...
        cycle(i)
    before = fd_count(bg)
    for i in range(40):
        cycle(i)
    after = fd_count(bg)
    assert after <= before + 2, 'agent fds grew from %d to %d over 40 runs' % (before, after)


def test_no_fd_leak_over_app_exits(bg, a):
    a.become_agent('allow')  # App A answers consent; App B comes and goes
    for i in range(2):
        x = bg.app('app-b', label='B%d' % i)
        x.get_tasks()
        x.kill()
    before = fd_count(bg)
    for i in range(15):
        x = bg.app('app-b', label='B%d' % i)
        t, ch = start_run(bg, x, name='sync')
        x.kill()
        ch.wait_line('canceled terminating')
        bg.wait_for(lambda: ch.eof, what='the agent to close the channel')
        ch.close()
    after = fd_count(bg)
    assert after <= before + 2, 'agent fds grew from %d to %d over 15 app exits' % (before, after)
