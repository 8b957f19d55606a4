//! A real BIRD 2 in a test namespace: started in the foreground with its own config, control
//! socket and pid file (`ip netns exec` does not isolate /run, so no two share them), asked
//! with `birdc -s`, and killed when dropped (the namespace's teardown kills it too).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Net, must};

/// One BIRD daemon.
pub struct Bird {
    ctl: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Bird {
    /// Writes `config` and starts `bird -f` with it in `node`'s namespace; waits until its
    /// control socket answers.
    pub fn start(net: &Net, node: &str, config: &str) -> Bird {
        let conf = net.dir.join(format!("bird-{node}.conf"));
        let ctl = net.dir.join(format!("bird-{node}.ctl"));
        let pid = net.dir.join(format!("bird-{node}.pid"));
        let log = net.dir.join(format!("bird-{node}.log"));
        std::fs::write(&conf, config).expect("bird config");
        must(Command::new("bird").args(["-p", "-c"]).arg(&conf));
        let child = net
            .cmd(node, "bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(&pid)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("bird log"))
            .spawn()
            .expect("spawn bird");
        let bird = Bird { ctl, log, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while bird.try_birdc(&["show", "status"]).is_none() {
            assert!(
                Instant::now() < deadline,
                "bird in {node} did not start:\n{}",
                std::fs::read_to_string(&bird.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bird
    }

    fn try_birdc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What `birdc -s CTL ARGS...` printed.
    pub fn birdc(&self, args: &[&str]) -> String {
        self.try_birdc(args)
            .unwrap_or_else(|| panic!("birdc {args:?} failed"))
    }

    /// The state of BGP protocol `name` (`Established`, `Active`, `Connect`...).
    pub fn bgp_state(&self, name: &str) -> String {
        let out = self.birdc(&["show", "protocols", name]);
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("?")
            .to_owned()
    }

    /// Waits (bounded by `limit`) until BGP protocol `name` is Established; how long it took.
    pub fn wait_established(&self, name: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.bgp_state(name) == "Established" {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "BGP session {name} not established within {limit:?}: {}\n{}",
                self.birdc(&["show", "protocols", "all", name]),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
