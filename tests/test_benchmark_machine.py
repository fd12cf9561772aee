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
    burn = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    other = subprocess.Popen([sys.executable, "-c", burn])
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


# --- What the machine is ------------------------------------------------------------------------------

ZEN4_AVX512 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 17
model name	: AMD EPYC
stepping	: 1
flags		: fpu sse2 fma sse4_2 avx hypervisor avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni

processor	: 1
model name	: another CPU entirely
"""
ZEN3_AVX2 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 1
model name	: AMD EPYC 7B13
stepping	: 0
flags		: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 hypervisor
"""
SAPPHIRE_RAPIDS_AMX = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags		: fma avx avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""


def _machine(tmp_path, cpuinfo: str, monkeypatch, onednn: str | None = None) -> dict:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    if onednn is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    return machine.current(path)


def test_the_avx512_machine_is_named_with_its_instruction_set_cores_and_tensorflow_build(tmp_path, monkeypatch):
    recorded = _machine(tmp_path, ZEN4_AVX512, monkeypatch)
    assert recorded["cpu_model"] == "AMD EPYC"  # the first processor's, as lscpu shows it
    assert (recorded["cpu_family"], recorded["cpu_model_number"], recorded["cpu_stepping"]) == ("25", "17", "1")
    assert "avx512_bf16" in recorded["instruction_sets"] and "fpu" not in recorded["instruction_sets"]
    assert recorded["hypervisor"] is not None and recorded["cpus"] == os.cpu_count()
    line = machine.name(recorded)
    assert line.startswith("AMD EPYC (family 25, model 17, stepping 1), AVX-512 (bf16, vnni), no AMX; ")
    assert f"; {os.cpu_count()} cores" in line
    assert line.endswith(f"; TensorFlow {recorded['tensorflow']}, oneDNN opts on (TF_ENABLE_ONEDNN_OPTS unset)")


def test_an_avx2_machine_and_an_amx_machine_read_apart(tmp_path, monkeypatch):
    avx2 = machine.name(_machine(tmp_path, ZEN3_AVX2, monkeypatch, onednn="0"))
    assert avx2.startswith("AMD EPYC 7B13 (family 25, model 1, stepping 0), AVX2+FMA, no AVX-512, no AMX; ")
    assert avx2.endswith("oneDNN opts off (TF_ENABLE_ONEDNN_OPTS=0)")
    amx = machine.name(_machine(tmp_path, SAPPHIRE_RAPIDS_AMX, monkeypatch, onednn="1"))
    assert "Platinum 8481C CPU @ 2.70GHz (family 6, model 143), AVX-512 (bf16, vnni, fp16), AMX (bf16, int8); " in amx
    assert amx.endswith("oneDNN opts on (TF_ENABLE_ONEDNN_OPTS=1)")


def test_onednn_opts_are_read_as_tensorflow_reads_them():
    assert machine.onednn_opts(None, "x86_64") is True  # TensorFlow's default on x86-64
    assert machine.onednn_opts("FALSE", "x86_64") is False and machine.onednn_opts("true", "aarch64") is True
    assert machine.onednn_opts(None, "aarch64") is None and machine.onednn_opts("maybe", "x86_64") is None


def test_results_without_a_machine_record_say_so_rather_than_borrow_one(tmp_path):
    assert machine.name(None) == "not recorded"
    assert machine.name(None, ("2 CPU cores", "x86_64")) == "not recorded (the run noted only: 2 CPU cores, x86_64)"
    assert machine.read_cpuinfo(tmp_path / "missing") == {}
