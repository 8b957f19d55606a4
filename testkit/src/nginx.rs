//! A real nginx (Debian's `nginx-light`/`nginx`) as a backend in a test's namespace, reading
//! the PROXY protocol: `listen PORT proxy_protocol`, an access log of
//! `$proxy_protocol_addr $proxy_protocol_port` (the client the balancer says it carries)
//! beside `$remote_addr $remote_port` (the peer the kernel saw), `GET /` answered in
//! tests/tools/client.py's format (`backend=NAME`, `X-Peer`), files served from a root and
//! `PUT /up/NAME` stored there (the DAV module), so bulk data both ways can be compared byte
//! for byte. The process is the namespace's server: the [`Net`]'s teardown stops it.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;

use crate::net::Net;

/// One nginx: where its files are.
#[derive(Debug, Clone)]
pub struct Nginx {
    /// The node it runs in (`b1`, ...).
    pub node: String,
    /// Its document root: files to download, and `up/` where uploads land.
    pub root: PathBuf,
    /// Its access log (one line per request, [`LogLine`]).
    pub access_log: PathBuf,
    /// Its error log.
    pub error_log: PathBuf,
}

/// One request as nginx logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The client the PROXY header named.
    pub client: SocketAddr,
    /// The TCP peer (the balancer's local address and port, with FullNAT).
    pub peer: SocketAddr,
    pub method: String,
    pub uri: String,
    pub status: u16,
    /// Bytes of the request (line, headers and body).
    pub request_length: u64,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
}

impl Nginx {
    /// Every request logged so far.
    pub fn log(&self) -> Vec<LogLine> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 9, "access log line {l:?}");
                let sa = |a: &str, p: &str| -> SocketAddr {
                    let ip: IpAddr = a.parse().unwrap_or_else(|e| panic!("{l:?}: {e}"));
                    SocketAddr::new(ip, p.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")))
                };
                LogLine {
                    client: sa(f[0], f[1]),
                    peer: sa(f[2], f[3]),
                    method: f[4].to_owned(),
                    uri: f[5].to_owned(),
                    status: f[6].parse().expect("status"),
                    request_length: f[7].parse().expect("request_length"),
                    bytes_sent: f[8].parse().expect("bytes_sent"),
                }
            })
            .collect()
    }
}

impl Net {
    /// Starts nginx in `node` on `port` (IPv4 and IPv6) with `proxy_protocol` (every
    /// connection must start with a PROXY header, v1 or v2) and waits (bounded) until it accepts connections.
    pub fn nginx_proxy_protocol(&mut self, node: &str, port: u16) -> Nginx {
        let dir = self.dir.join(format!("{node}-nginx"));
        let root = dir.join("www");
        std::fs::create_dir_all(root.join("up")).expect("nginx root");
        let n = Nginx {
            node: node.to_owned(),
            root: root.clone(),
            access_log: dir.join("access.log"),
            error_log: dir.join("error.log"),
        };
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr $remote_port '
                  '$request_method $request_uri $status $request_length $bytes_sent';
    access_log {d}/access.log pp;
    # X-Peer as a socket address: an IPv6 peer in brackets.
    map $remote_addr $peer_host {{
        ~:      [$remote_addr];
        default $remote_addr;
    }}
    server {{
        listen {port} proxy_protocol;
        listen [::]:{port} proxy_protocol;
        root {root};
        client_max_body_size 64m;
        location = / {{
            add_header X-Peer $peer_host:$remote_port;
            return 200 "backend={node}\n";
        }}
        location /up/ {{
            dav_methods PUT;
        }}
    }}
}}
"#,
            root = root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let log = File::create(dir.join("stderr.log")).expect("log");
        // `ip netns exec` execs the program: the child's pid is nginx's (one process).
        let child = self
            .cmd(node, "nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nginx");
        self.servers.push(Some(child));
        let stderr = dir.join("stderr.log");
        self.wait_listening(node, port, "nginx", || {
            format!(": {}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        n
    }
}
