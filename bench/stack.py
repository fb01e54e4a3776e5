"""A Fusion and an agent on one tree, in a temporary FUSTOR_HOME each, for the agent
benchmarks: free ports, the two configs, start and stop."""
import os
import shutil
import socket
import subprocess
import tempfile


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, bin_dir, root, agent_log="WARNING", view_params="{}", source_params="{}",
                 pipe_params=""):
        self.bin_dir = bin_dir
        self.home = tempfile.mkdtemp(prefix="fustor-bench-")
        self.api, rx = free_port(), free_port()
        self.fusion_home, self.agent_home = f"{self.home}/fusion", f"{self.home}/agent"
        os.makedirs(f"{self.fusion_home}/fusion-config")
        os.makedirs(f"{self.agent_home}/agent-config")
        with open(f"{self.fusion_home}/fusion-config/default.yaml", "w") as f:
            f.write(f"""logging: WARNING
receivers:
  rx: {{driver: http, bind_host: 127.0.0.1, port: {rx}, api_keys: [{{key: k, pipe_id: p}}]}}
views:
  v: {{driver: fs, api_keys: [r], driver_params: {view_params}}}
pipes:
  p: {{receiver: rx, views: [v]}}
""")
        with open(f"{self.agent_home}/agent-config/default.yaml", "w") as f:
            f.write(f"""agent_id: bench
logging: {agent_log}
sources:
  s: {{driver: fs, uri: "{root}", driver_params: {source_params}}}
senders:
  f: {{driver: fusion, uri: "http://127.0.0.1:{rx}", credential: {{key: k}}}}
pipes:
  p: {{source: s, sender: f{pipe_params}}}
""")
        self.fenv = dict(os.environ, FUSTOR_HOME=self.fusion_home,
                         FUSTOR_FUSION_PORT=str(self.api))
        self.aenv = dict(os.environ, FUSTOR_HOME=self.agent_home)

    def start_fusion(self):
        subprocess.run([f"{self.bin_dir}/fustor-fusion", "start", "-D"], env=self.fenv,
                       check=True, capture_output=True)

    def start_agent(self):
        subprocess.run([f"{self.bin_dir}/fustor-agent", "start", "-D"], env=self.aenv,
                       check=True, capture_output=True)

    def agent_log(self):
        with open(f"{self.agent_home}/logs/agent.log") as f:
            return f.read()

    def fusion_pid(self):
        with open(f"{self.fusion_home}/fusion.pid") as f:
            return int(f.read())

    def agent_pid(self):
        with open(f"{self.agent_home}/agent.pid") as f:
            return int(f.read())

    def stop(self):
        subprocess.run([f"{self.bin_dir}/fustor-agent", "stop"], env=self.aenv,
                       capture_output=True)
        subprocess.run([f"{self.bin_dir}/fustor-fusion", "stop"], env=self.fenv,
                       capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
