import os
import subprocess
import sys

from tf_mlp.benchmark import machine


def _stat_file(tmp_path, busy_ticks: int, idle_ticks: int = 1000):
    path = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal
    path.write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 7 0 0 0 0 0\ncpu0 1 2 3 4\n")
    return path


def test_busy_seconds_count_work_fields_but_not_idle_or_iowait(tmp_path):
    path = tmp_path / "stat"
    path.write_text("cpu  100 20 30 5000 70 4 6 10 0 0\n")
    assert machine.machine_busy_seconds(path) == (100 + 20 + 30 + 4 + 6 + 10) / os.sysconf("SC_CLK_TCK")
    assert machine.machine_busy_seconds(tmp_path / "missing") is None


def test_another_process_burning_a_core_is_seen():
    other = subprocess.Popen([sys.executable, "-c",
                              "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    watch = machine.OtherProcesses().start()
    try:
        busy_until = os.times().elapsed + 1.0
        while os.times().elapsed < busy_until:
            os.sched_yield()
        share = watch.share()
    finally:
        other.wait()
    # A loop that saturates one core is about 1/cpus of the machine; the coarse ticks leave room.
    assert share > 0.5 / os.cpu_count()


def test_the_benchmarks_own_work_is_not_counted(tmp_path):
    ticks = os.sysconf("SC_CLK_TCK")
    stat = _stat_file(tmp_path, busy_ticks=1000)
    watch = machine.OtherProcesses(cpus=2, stat_path=stat).start()
    own_before = machine.own_cpu_seconds()
    end = os.times().elapsed + 0.5
    while os.times().elapsed < end:  # this process's own busy loop: the load average would count it
        pass
    own = machine.own_cpu_seconds() - own_before
    _stat_file(tmp_path, busy_ticks=1000 + round(own * ticks))  # the machine did only our work
    assert watch.share() < 0.02
    _stat_file(tmp_path, busy_ticks=1000 + round(own * ticks) + ticks)  # and one CPU-second of someone else's
    wall = os.times().elapsed - end + 0.5
    assert 0.8 / (2 * wall) < watch.share() < 1.2 / (2 * 0.5)  # one CPU-second over about 0.5 s on 2 cores


def test_shares_are_described_and_judged(tmp_path):
    assert machine.describe([0.01, 0.031], 2) == "other processes used 1%–3% of the 2 cores while it ran"
    assert machine.describe([None], 2).endswith("could not be measured (no /proc/stat)")
    assert machine.quiet([0.0, 0.04]) is True and machine.quiet([0.0, 0.3]) is False and machine.quiet([None]) is None


def test_without_proc_stat_the_share_is_unknown(tmp_path):
    watch = machine.OtherProcesses(stat_path=tmp_path / "missing").start()
    assert watch.share() is None
