# benchlib.py: shared bits of the benchmarks: paths to the built programs,
# CPU time of a process from /proc, the machine line and table printing.
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'scenarios'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'e2e'))

CLK_TCK = os.sysconf('SC_CLK_TCK')


def proc_cpu(pid):
    """utime+stime of @pid in seconds (clock-tick resolution)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine():
    model = '?'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return '%s, %d cpus, %s %s, load %.2f' % (model, os.cpu_count() or 0, platform.system(),
                                            platform.release(), load)


def table(header, rows):
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: '| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |'
    out = [line(cells[0]), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    out += [line(r) for r in cells[1:]]
    return '\n'.join(out)


def human_rate(bps):
    return '%.1f KB/s' % (bps / 1000.0)
