"""Run a command and sample the RSS of its whole process tree every 0.5 s (stops it above 20 GB).

    python reports/full-size/measure.py OUT.json COMMAND...   -> OUT.json: exit code, wall s, peak tree/single RSS, load
"""
import json, os, subprocess, sys, time
import psutil
out, cmd = sys.argv[1], sys.argv[2:]
start = time.time(); load0 = os.getloadavg()
p = subprocess.Popen(cmd)
proc = psutil.Process(p.pid); peak = 0; peak_single = 0; loads = []
while p.poll() is None:
    try:
        procs = [proc] + proc.children(recursive=True)
        rss = []
        for q in procs:
            try: rss.append(q.memory_info().rss)
            except psutil.Error: pass
        peak = max(peak, sum(rss)); peak_single = max(peak_single, max(rss or [0]))
        if sum(rss) > 20e9:
            print("RSS above 20 GB: stopping", file=sys.stderr)
            for q in reversed(procs):  # children first: a spawned worker must not outlive its parent
                try: q.kill()
                except psutil.Error: pass
    except psutil.Error: pass
    if int(time.time()) % 30 == 0: loads.append(os.getloadavg()[0])
    time.sleep(0.5)
res = {"cmd": cmd, "rc": p.returncode, "wall_s": time.time() - start, "peak_tree_rss_gb": peak / 1e9,
       "peak_single_rss_gb": peak_single / 1e9, "load_start": load0, "load_end": os.getloadavg(),
       "load_samples": loads[::4]}
open(out, "w").write(json.dumps(res, indent=1)); print(json.dumps(res)); sys.exit(p.returncode)
