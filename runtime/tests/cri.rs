//! Kubernetes' path to our runtime: containerd's CRI plugin with the runtime handler
//! `bulkhead` (the snippet shipped in deploy/containerd-bulkhead.toml, which a RuntimeClass
//! named `bulkhead` selects), driven through the CRI gRPC API the way the kubelet drives it.
//!
//! No registry is reachable: the pod's image and the sandbox (pause) image are the test
//! bundle's busybox rootfs, imported into containerd's `k8s.io` namespace. The pod's network
//! is CNI's (Debian's containernetworking-plugins) with containerd in a network namespace of
//! the test's own: the host's network is not touched, and no traffic is sent.
//!
//! Run time here: about 1–2 s for the pod's whole life.

mod common;
mod containerd;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use containerd::{Containerd, needs_tools, oci_archive};
use k8s_cri::v1 as cri;

type Client = cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

const HANDLER: &str = "bulkhead";
const IMAGE: &str = "docker.io/bulkhead/busybox:latest";
const PAUSE: &str = "docker.io/bulkhead/pause:latest";
/// Where the CRI finds the CNI plugins on Debian (the upstream default is /opt/cni/bin).
const CNI_BIN: &str = "/usr/lib/cni";

/// The shipped containerd snippet with `BinaryName` pointed at the debug build, and our state
/// root under the test's dir (the shim passes `--root <Root>/k8s.io`).
fn handler_snippet() -> String {
    let shipped = include_str!("../../deploy/containerd-bulkhead.toml");
    let binary = r#"BinaryName = "/usr/local/bin/bulkhead-runtime""#;
    assert!(shipped.contains(binary), "{shipped}");
    shipped.replace(
        binary,
        &format!(
            "BinaryName = {:?}\n    Root = \"{{dir}}/bulkhead\"",
            runtime()
        ),
    )
}

/// The CRI plugin's settings for this test: our images, CNI from the test's dir, no lowering
/// of oom_score_adj below containerd's own (this session lacks CAP_SYS_RESOURCE), and runc as
/// the default runtime as on a node, so that only the pod's runtime handler selects ours. (A
/// `runtimes` table in a config replaces containerd's default map, which holds runc.)
fn cri_config(net: &Path) -> String {
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
{}"#,
        net.display(),
        handler_snippet()
    )
}

/// The pod network: a veth pair (CNI's ptp plugin) between the pod's netns and containerd's
/// own, an address from the documentation range (192.0.2.0/24, TEST-NET-1; no traffic is
/// sent) kept by host-local under the test's dir. (The loopback plugin alone gives the pod no
/// `eth0`, and containerd fails RunPodSandbox without one: "failed to find network info".)
fn write_cni_config(dir: &Path) {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bulkhead-pod",
        "plugins": [{
            "type": "ptp",
            "ipam": {
                "type": "host-local",
                "dataDir": dir.join("cni-ipam"),
                "ranges": [[{"subnet": "192.0.2.0/29"}]]
            }
        }]
    });
    std::fs::create_dir_all(dir.join("cni")).unwrap();
    std::fs::write(dir.join("cni/10-pod.conflist"), conf.to_string()).unwrap();
}

/// A containerd with the CRI plugin configured for the handler, the images imported, and a
/// CRI client on its socket.
struct Cri {
    // Field order is drop order: the client before the runtime it runs on, both before
    // containerd stops.
    client: Client,
    rt: tokio::runtime::Runtime,
    ctd: Containerd,
    /// The CNI config and host-local's leases.
    net: tempfile::TempDir,
    /// Host directories the CRI creates and never removes (libcni's result cache, the mount
    /// points of pods' netns) that did not exist before: removed at the end if empty.
    made_dirs: Vec<&'static str>,
}

/// Host directories containerd's CRI creates on the first pod, innermost first.
const CRI_HOST_DIRS: [&str; 3] = ["/var/lib/cni/results", "/var/lib/cni", "/var/run/netns"];

impl Drop for Cri {
    fn drop(&mut self) {
        for d in &self.made_dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Cri {
    fn start() -> Cri {
        let made_dirs = CRI_HOST_DIRS
            .into_iter()
            .filter(|d| !Path::new(d).exists())
            .collect();
        let net = tempfile::Builder::new()
            .prefix("bh-cni-")
            .tempdir()
            .unwrap();
        write_cni_config(net.path());
        let ctd = Containerd::start_in_netns(&cri_config(net.path()));
        let b = Bundle::new(&["true"]);
        let rootfs = b.path().join("rootfs");
        for (name, cmd) in [(PAUSE, &["sleep", "2147483647"][..]), (IMAGE, &["sh"][..])] {
            let archive = oci_archive(&rootfs, ctd.dir.path(), name, cmd);
            let o = ctd.ctr(&[
                "-n",
                "k8s.io",
                "images",
                "import",
                archive.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sock = ctd.sock();
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_static("http://[::]").connect_with_connector(
                    tower::service_fn(move |_: tonic::transport::Uri| {
                        let sock = sock.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(sock).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }),
                ),
            )
            .unwrap();
        Cri {
            client: Client::new(channel),
            rt,
            ctd,
            net,
            made_dirs,
        }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// Wait for one CRI call; a failure panics with containerd's log.
    fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> T {
        match self.rt.block_on(fut) {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("CRI {what}: {e}\ncontainerd's log:\n{}", self.ctd.log()),
        }
    }

    /// Our runtime's state directory of container (or sandbox) `id`.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.ctd.dir.path().join("bulkhead/k8s.io").join(id)
    }

    /// The `info` JSON a verbose status returns (pid, runtime handler, OCI spec …).
    fn info(info: &HashMap<String, String>) -> serde_json::Value {
        serde_json::from_str(info.get("info").expect("verbose status has no info")).unwrap()
    }

    fn sandbox_status(&self, id: &str) -> (cri::PodSandboxStatus, serde_json::Value) {
        let r = self.call(
            "PodSandboxStatus",
            self.client()
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose: true,
                }),
        );
        (r.status.unwrap(), Cri::info(&r.info))
    }

    fn container_status(&self, id: &str) -> (cri::ContainerStatus, serde_json::Value) {
        let r = self.call(
            "ContainerStatus",
            self.client().container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            }),
        );
        (r.status.unwrap(), Cri::info(&r.info))
    }

    fn exec(&self, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
        self.call(
            "ExecSync",
            self.client().exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            }),
        )
    }
}

/// Stops and removes the pod even when the test fails half-way (the shims and containers
/// would otherwise outlive the test's containerd).
struct PodGuard<'a> {
    cri: &'a Cri,
    id: String,
    cgroup_parent: String,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut c = self.cri.client();
        let id = self.id.clone();
        let _ = self.cri.rt.block_on(async move {
            let _ = c
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        });
        let _ = remove_pod_cgroups(&self.cgroup_parent);
    }
}

/// Remove the pod's cgroup (what the kubelet does after RemovePodSandbox) in every hierarchy,
/// innermost first; an error names a cgroup that was not empty.
fn remove_pod_cgroups(parent: &str) -> Result<(), String> {
    let mut dirs = cgroups_of(parent);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        std::fs::remove_dir(&d).map_err(|e| format!("pod cgroup {}: {e}", d.display()))?;
    }
    Ok(())
}

/// `/proc/PID/ns/NAME` of a process: equal links, same namespace.
fn ns(pid: i64, name: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap()
}

fn pid_of(info: &serde_json::Value) -> i64 {
    let pid = info["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0, "no pid in {info}");
    pid
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cri_runs_a_pod_under_bulkhead() {
    needs_tools!("containerd", "ctr", "sha256sum", "unshare", "ip");
    let missing: Vec<&str> = ["loopback", "ptp", "host-local"]
        .into_iter()
        .filter(|p| !Path::new(CNI_BIN).join(p).is_file())
        .collect();
    bulkhead_testkit::skip_unless!(
        missing.is_empty(),
        "CNI plugins {missing:?} not in {CNI_BIN} (Debian's containernetworking-plugins)"
    );
    become_subreaper();
    let started = Instant::now();
    let cri = Cri::start();
    let dir = cri.ctd.dir.path().to_path_buf();

    let v = cri.call(
        "Version",
        cri.client().version(cri::VersionRequest {
            version: "v1".into(),
        }),
    );
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    assert_eq!(v.runtime_api_version, "v1", "{v:?}");

    // The pod, as the kubelet asks for one: its own cgroup parent (kubelet makes and removes
    // the pod's cgroup; the runtime makes the containers' below it), each container in its
    // own pid namespace (Kubernetes' default), net/ipc/uts the pod's.
    let cgroup_parent = format!("bulkhead-cri-{}", std::process::id());
    let namespaces = cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "bench".into(),
            uid: format!("uid-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "bulkhead-pod".into(),
        log_directory: dir.join("pod-logs").to_str().unwrap().into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cgroup_parent}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::create_dir_all(dir.join("pod-logs")).unwrap();
    let pod = cri
        .call(
            "RunPodSandbox",
            cri.client().run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                runtime_handler: HANDLER.into(),
            }),
        )
        .pod_sandbox_id;
    let guard = PodGuard {
        cri: &cri,
        id: pod.clone(),
        cgroup_parent: cgroup_parent.clone(),
    };
    let (status, sandbox) = cri.sandbox_status(&pod);
    assert_eq!(
        status.state,
        cri::PodSandboxState::SandboxReady as i32,
        "{status:?}"
    );
    let pod_ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(pod_ip.starts_with("192.0.2."), "pod IP {pod_ip:?}");
    assert_eq!(sandbox["runtimeHandler"], HANDLER, "{sandbox}");
    let sandbox_pid = pid_of(&sandbox);
    let netns = sandbox["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .map(PathBuf::from)
        .expect("no network namespace path in the sandbox's spec");
    assert!(netns.exists(), "{}", netns.display());

    // Two containers of the image in the pod.
    let mut containers = Vec::new();
    for name in ["app", "sidecar"] {
        let id = cri
            .call(
                "CreateContainer",
                cri.client().create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(cri::ContainerConfig {
                        metadata: Some(cri::ContainerMetadata {
                            name: name.into(),
                            attempt: 0,
                        }),
                        image: Some(cri::ImageSpec {
                            image: IMAGE.into(),
                            ..Default::default()
                        }),
                        command: vec!["sh".into()],
                        args: vec![
                            "-c".into(),
                            format!("echo hello from {name}; exec sleep 600"),
                        ],
                        log_path: format!("{name}.log"),
                        linux: Some(cri::LinuxContainerConfig {
                            security_context: Some(cri::LinuxContainerSecurityContext {
                                namespace_options: Some(namespaces.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    sandbox_config: Some(pod_config.clone()),
                }),
            )
            .container_id;
        cri.call(
            "StartContainer",
            cri.client().start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        );
        containers.push(id);
    }

    // They run under our runtime: its state directory (with fields only ours writes) under
    // the shim's --root, for the sandbox and each container.
    for id in std::iter::once(&pod).chain(&containers) {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cri.state_dir(id).join("state.json")).unwrap())
                .unwrap();
        assert!(state.get("leaves").is_some(), "not our state: {state}");
    }
    let mut pids = Vec::new();
    for id in &containers {
        let (status, info) = cri.container_status(id);
        assert_eq!(
            status.state,
            cri::ContainerState::ContainerRunning as i32,
            "{status:?}"
        );
        pids.push(pid_of(&info));
    }

    // The pod's namespaces: net, ipc and uts the sandbox's, its own netns (neither the
    // host's nor containerd's);
    // pid and mount namespaces the container's own.
    for &pid in &pids {
        for name in ["net", "ipc", "uts"] {
            assert_eq!(ns(pid, name), ns(sandbox_pid, name), "{name} of pid {pid}");
        }
        for name in ["pid", "mnt"] {
            assert_ne!(ns(pid, name), ns(sandbox_pid, name), "{name} of pid {pid}");
        }
    }
    let me = std::process::id() as i64;
    assert_ne!(ns(sandbox_pid, "net"), ns(me, "net"));
    assert_ne!(ns(sandbox_pid, "net"), ns(cri.ctd.pid() as i64, "net"));
    assert_ne!(pids[0], pids[1]);

    // ExecSync: output and exit status; inside, the pod's hostname and network (lo and the
    // CNI's eth0 with the pod's IP).
    let r = cri.exec(
        &containers[0],
        &[
            "sh",
            "-c",
            "echo exec-ok init=$(cat /proc/1/comm) host=$(hostname); ls /sys/class/net; \
             ip -4 -o addr show dev eth0",
        ],
    );
    assert_eq!(r.exit_code, 0, "{}", text(&r.stderr));
    let out = text(&r.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        ["exec-ok init=sleep host=bulkhead-pod", "eth0", "lo"],
        "{out}"
    );
    assert!(out.contains(&format!(" {pod_ip}/")), "{out}");
    let r = cri.exec(&containers[0], &["sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(r.exit_code, 3);
    assert_eq!(text(&r.stderr).trim(), "to-stderr");
    // IPC shared: what one container puts in the pod's /dev/shm the other reads.
    let r = cri.exec(&containers[0], &["sh", "-c", "echo shared > /dev/shm/bh"]);
    assert_eq!(r.exit_code, 0, "{}", text(&r.stderr));
    let r = cri.exec(&containers[1], &["cat", "/dev/shm/bh"]);
    assert_eq!(text(&r.stdout).trim(), "shared", "{}", text(&r.stderr));

    // ContainerStats: cpu and memory from the container's cgroups.
    let stats = cri
        .call(
            "ContainerStats",
            cri.client().container_stats(cri::ContainerStatsRequest {
                container_id: containers[0].clone(),
            }),
        )
        .stats
        .expect("no stats");
    assert_eq!(stats.attributes.as_ref().unwrap().id, containers[0]);
    let cpu = stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds);
    assert!(cpu.is_some_and(|v| v.value > 0), "{stats:?}");
    let mem = stats.memory.as_ref().and_then(|m| m.working_set_bytes);
    assert!(mem.is_some_and(|v| v.value > 0), "{stats:?}");

    // The containers' output reached the CRI log files.
    for (name, id) in ["app", "sidecar"].iter().zip(&containers) {
        let log = std::fs::read_to_string(dir.join("pod-logs").join(format!("{name}.log")))
            .unwrap_or_default();
        assert!(log.contains(&format!("hello from {name}")), "{id}: {log:?}");
    }

    // One container stopped and removed by itself, then the whole pod.
    cri.call(
        "StopContainer",
        cri.client().stop_container(cri::StopContainerRequest {
            container_id: containers[1].clone(),
            timeout: 0,
        }),
    );
    let (status, _) = cri.container_status(&containers[1]);
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    cri.call(
        "RemoveContainer",
        cri.client().remove_container(cri::RemoveContainerRequest {
            container_id: containers[1].clone(),
        }),
    );
    assert!(!cri.state_dir(&containers[1]).exists());
    cri.call(
        "StopPodSandbox",
        cri.client().stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    );
    cri.call(
        "RemovePodSandbox",
        cri.client()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            }),
    );
    drop(guard);

    // Nothing left: no pod or container in the CRI, none of our state, no cgroup of any of
    // them (and the pod's parent cgroup empty: the kubelet's to remove, so we do), no mount
    // under containerd's dirs, no netns, no shim.
    let pods = cri.call(
        "ListPodSandbox",
        cri.client()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    );
    assert!(pods.items.is_empty(), "{pods:?}");
    let cs = cri.call(
        "ListContainers",
        cri.client()
            .list_containers(cri::ListContainersRequest { filter: None }),
    );
    assert!(cs.containers.is_empty(), "{cs:?}");
    let ids: Vec<String> = std::iter::once(pod.clone()).chain(containers).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        reap_orphans();
        let mut left = Vec::new();
        for id in &ids {
            if cri.state_dir(id).exists() {
                left.push(format!("state dir {}", cri.state_dir(id).display()));
            }
            left.extend(
                cgroups_of(id)
                    .iter()
                    .map(|d| format!("cgroup {}", d.display())),
            );
        }
        left.extend(mounts_mentioning(&dir));
        if let Ok(rd) = std::fs::read_dir(cri.net.path().join("cni-ipam/bulkhead-pod")) {
            left.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("192.0.2."))
                    .map(|n| format!("IP lease {n}")),
            );
        }
        if let Ok(rd) = std::fs::read_dir(CRI_HOST_DIRS[0]) {
            left.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&pod))
                    .map(|n| format!("CNI result {n}")),
            );
        }
        if netns.exists() {
            left.push(format!("netns {}", netns.display()));
        }
        for &pid in std::iter::once(&sandbox_pid).chain(&pids) {
            // Gone, or a zombie of ours not reaped yet (we are a subreaper).
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit(") ")
                .next()
                .is_some_and(|r| !r.starts_with('Z'))
                && !stat.is_empty()
            {
                left.push(format!("process {pid}: {stat}"));
            }
        }
        left.extend(processes_matching(&[
            pod.clone(),
            dir.join("ctd.sock").to_str().unwrap().to_string(),
        ]));
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    remove_pod_cgroups(&cgroup_parent).unwrap();

    // And containerd itself stops with nothing of it running.
    let ctd_pid = cri.ctd.pid();
    let net_dir = cri.net.path().to_path_buf();
    let made_dirs = cri.made_dirs.clone();
    drop(cri);
    assert!(!Path::new(&format!("/proc/{ctd_pid}")).exists() || proc_state(ctd_pid as i32) == 'Z');
    assert!(
        processes_matching(&[dir.to_str().unwrap().to_string()]).is_empty(),
        "{:?}",
        processes_matching(&[dir.to_str().unwrap().to_string()])
    );
    assert!(!dir.exists());
    assert!(!net_dir.exists());
    for d in made_dirs {
        assert!(!Path::new(d).exists(), "{d} left");
    }
    eprintln!("cri: the pod's whole life took {:?}", started.elapsed());
}
